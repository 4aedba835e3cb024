// Package policy holds a caller's scope (allowed models and regions,
// priority class, per-request caps, admin rights) and applies it to
// inference requests: refusals are OpenAI-shaped errors, 403 for scope
// and 400 for parameters; output-token caps clamp or refuse.
package policy
