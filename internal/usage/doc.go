// Package usage extracts token usage from Azure OpenAI / OpenAI responses:
// whole JSON bodies (chat, completions, embeddings, responses) and SSE
// streams (chat completion chunks, Responses API events), beside the bytes
// that are forwarded, never instead of them.
//
// It must not depend on other gateway packages: it knows the wire formats only.
//
// # Usage
//
//   - [FromBody] reads a complete body.
//   - [Recorder] is an io.Writer a non-streaming body is teed into while it
//     is copied to the client; it keeps at most about 1.1 MiB of any body.
//   - [Stream] is the io.WriteCloser a text/event-stream response is copied
//     through: it forwards each complete event unchanged (optionally minus
//     the usage chunk the gateway asked for on the client's behalf) and holds
//     only the unfinished event.
//
// Usage that was not reported stays distinguishable from zero
// ([Usage.Reported]), so a cut stream can be estimated instead of billed as
// free.
package usage
