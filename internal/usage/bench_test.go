package usage

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// largeChatStream returns a 500-event Azure chat stream with include_usage
// on (the prompt filter chunk, a role chunk, content chunks with
// content_filter_results and "usage":null, the finish chunk, the usage chunk
// and [DONE]), and the length of each event.
func largeChatStream() ([]byte, []int) {
	const cfr = `{"hate":{"filtered":false,"severity":"safe"},"protected_material_code":{"filtered":false,"detected":false},"protected_material_text":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}`
	const tail = `"created":1745488000,"id":"chatcmpl-BNq2ZkHcVj7o8mXbLr3aTqYwE1sPd","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291"`
	words := []string{" the", " gateway", " streams", " tokens", ",", " and", " counts", "\\n", " every", " \\\"one\\\""}
	var b bytes.Buffer
	var sizes []int
	add := func(ev string) {
		b.WriteString(ev)
		sizes = append(sizes, len(ev))
	}
	add(`data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}],"usage":null}` + "\n\n")
	add(`data: {"choices":[{"content_filter_results":{},"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],` + tail + `,"usage":null}` + "\n\n")
	for i := range 496 {
		add(`data: {"choices":[{"content_filter_results":` + cfr + `,"delta":{"content":"` + words[i%len(words)] + `"},"finish_reason":null,"index":0,"logprobs":null}],` + tail + `,"usage":null}` + "\n\n")
	}
	add(`data: {"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],` + tail + `,"usage":null}` + "\n\n")
	add(`data: {"choices":[],` + tail + `,"usage":{"completion_tokens":496,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":1203,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":1024},"total_tokens":1699}}` + "\n\n")
	add("data: [DONE]\n\n")
	return b.Bytes(), sizes
}

// BenchmarkStream_LargeStream runs a 500-event stream through Stream the way
// the proxy does (strip + keep text) and without options. "per-event" is
// the usual read pattern of a flushed SSE response (one read per event);
// the others are coalesced reads that split events anywhere.
func BenchmarkStream_LargeStream(b *testing.B) {
	in, sizes := largeChatStream()
	want := Usage{PromptTokens: 1203, CompletionTokens: 496, CachedTokens: 1024, TotalTokens: 1699, Reported: true}
	chunkings := []struct {
		name  string
		sizes []int
	}{
		{"per-event", sizes},
		{"1400B", []int{1400}},
		{"4KiB", []int{4 << 10}},
		{"32KiB", []int{32 << 10}},
	}
	optionSets := []struct {
		name string
		opts StreamOptions
	}{
		{"proxy", StreamOptions{StripUsageChunk: true, KeepText: true}},
		{"plain", StreamOptions{}},
	}
	for _, o := range optionSets {
		for _, c := range chunkings {
			b.Run(fmt.Sprintf("%s/%s", o.name, c.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(in)))
				s := NewStream(io.Discard, KindChat, o.opts)
				for b.Loop() {
					s.Reset(io.Discard, KindChat, o.opts)
					rest := in
					for i := 0; len(rest) > 0; i++ {
						n := min(c.sizes[i%len(c.sizes)], len(rest))
						_, _ = s.Write(rest[:n])
						rest = rest[n:]
					}
					_ = s.Close()
				}
				events := len(sizes)
				if o.opts.StripUsageChunk {
					events--
				}
				if got := s.Usage(); got != want || !s.SawDone() || s.Events() != events {
					b.Fatalf("got %+v, %d events, done %v, want %+v, %d, true", got, s.Events(), s.SawDone(), want, events)
				}
			})
		}
	}
}

func BenchmarkFromBody(b *testing.B) {
	emb, _ := embeddingsBody(1 << 20)
	bodies := []struct {
		name string
		kind Kind
		body []byte
	}{
		{"chat", KindChat, readTestdata(b, "chat.in.json")},
		{"responses", KindResponses, readTestdata(b, "responses.in.json")},
		{"embeddings-1MiB", KindEmbeddings, emb},
	}
	for _, bb := range bodies {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.body)))
			for b.Loop() {
				if u := FromBody(bb.kind, bb.body); !u.Reported {
					b.Fatal("usage not found")
				}
			}
		})
	}
}

// BenchmarkRecorder tees bodies through a reused (pool-style) Recorder in
// the proxy's 32 KiB reads, then reads the usage.
func BenchmarkRecorder(b *testing.B) {
	emb, _ := embeddingsBody(5 << 20)
	bodies := []struct {
		name string
		kind Kind
		body []byte
	}{
		{"chat", KindChat, readTestdata(b, "chat.in.json")},
		{"embeddings-5MiB", KindEmbeddings, emb},
	}
	for _, bb := range bodies {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.body)))
			r := NewRecorder(bb.kind)
			for b.Loop() {
				r.Reset(bb.kind)
				writeChunks(r, bb.body, 32<<10)
				if u := r.Usage(); !u.Reported {
					b.Fatal("usage not found")
				}
			}
		})
	}
}
