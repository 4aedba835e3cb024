// Package route turns a model alias into the ordered list of backend
// deployments to try, and keeps the passive health that ordering needs.
//
// A plan keeps only the targets in the caller's allowed regions, drops
// deployments that are cooling after a 429 and backends whose circuit is
// open, orders the rest in priority tiers (provisioned before standard)
// and, inside a tier, by weighted rendezvous hashing of the caller, so a
// canary split is sticky per caller. Each [Backend] carries its [Health]
// (a circuit breaker in atomics plus recent latencies); each deployment its
// cooling-until and last utilization sample. [Affinity] remembers which
// backend created a Responses API response, shared across instances
// through the store.
//
// It depends on config, backendauth and the store contract. Planning never
// performs I/O; only [Affinity] reads and writes its table, and its writes
// are never on the request path.
package route
