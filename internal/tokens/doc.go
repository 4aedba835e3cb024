// Package tokens estimates the prompt tokens of an OpenAI-shaped request
// body offline, before it is forwarded, so the quota can admit it (issue 4).
//
// It counts with tiktoken (cl100k_base or o200k_base, chosen by model
// family) from BPE tables compiled into the binary, never from the network.
// The estimate is the tokens of message contents / input plus a small
// per-message overhead; it never fails: anything it cannot parse counts as
// bytes/4. Only the first MaxExactBytes of a request's text are tokenized;
// the rest is counted with the tokens-per-byte ratio seen, so the CPU cost
// per request is bounded (about 0.4 ms).
//
// It depends only on internal/openai (for the operation) and tiktoken-go; it
// must not depend on the quota, the store or the request path.
package tokens
