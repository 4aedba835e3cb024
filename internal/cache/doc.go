// Package cache is the gateway's response cache: it decides whether a call
// may be served from, or stored in, the cache (exact: the same canonical
// request; semantic: a prompt whose embedding is close enough), keeps the
// entries (a Table Storage table, an in-memory LRU in front of it, and a
// bounded per-partition vector index on each instance), and serves a hit
// as JSON or as a replayed SSE stream in the chat completions, completions
// or Responses API shape. It knows nothing of HTTP routing, quotas or the
// ledger: the handler asks it, and records what it did.
package cache
