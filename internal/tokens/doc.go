// Package tokens estimates the prompt tokens of an OpenAI-shaped request
// body offline, before it is forwarded, so the quota can admit it (issue 4).
//
// It counts exactly as tiktoken's encode_ordinary would (cl100k_base or
// o200k_base, chosen by model family), with its own BPE counter: a
// hand-written pre-tokenizer that reproduces the encodings' split patterns
// without a regexp engine (split.go), and a byte-pair merge over a compact
// rank table (one byte blob, offsets and an open-addressing hash; about 2 MiB
// for cl100k_base and 4 MiB for o200k_base) parsed on first use from the BPE
// files that github.com/pkoukk/tiktoken-go-loader embeds — never from the
// network. Pieces that are one token (most of them) cost one hash lookup;
// the counts of recent multi-token pieces are cached, as Hugging Face's BPE
// tokenizers cache words. tiktoken-go is kept only as the test oracle
// (oracle_test.go): a differential test and a fuzz target prove the counts
// equal on a varied corpus.
//
// The estimate is the tokens of message contents / input plus a small
// per-message overhead; it never fails: anything it cannot parse counts as
// bytes/4. Only the first MaxExactBytes of a request's text are tokenized;
// the rest is counted with the tokens-per-byte ratio seen, so the CPU cost
// per request is bounded.
//
// It depends only on internal/openai (for the operation), gjson and the
// embedded BPE files; it must not depend on the quota, the store or the
// request path.
package tokens
