// Package smoke checks a deployed gateway from the outside, the way a new
// client would: list models, a chat completion, a streamed one, an async
// job (submit, then poll until it finishes) and the usage report. It
// reports plainly what works and what does not (`handler smoke`).
//
// It speaks only HTTP to the gateway; it must not import the gateway's
// internals, so it cannot pass by sharing a bug with them.
package smoke
