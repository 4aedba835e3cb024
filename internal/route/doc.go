// Package route turns a model alias into the ordered list of backend
// deployments to try: priority tiers first (provisioned before standard),
// weighted order inside a tier.
//
// It depends on config and backendauth; it never performs I/O.
package route
