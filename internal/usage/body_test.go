package usage

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestFromBody_Golden(t *testing.T) {
	for _, name := range testdataFiles(t, "*.in.json") {
		base := strings.TrimSuffix(name, ".in.json")
		t.Run(base, func(t *testing.T) {
			body := readTestdata(t, name)
			got := FromBody(kindOf(base), body)
			checkGolden(t, base+".golden.json", got)

			// The Recorder must agree, however the body is split.
			for _, size := range []int{1, 7, 512, len(body)} {
				r := NewRecorder(kindOf(base))
				writeChunks(r, body, size)
				if u := r.Usage(); u != got {
					t.Errorf("Recorder (chunks of %d): got %+v, want %+v", size, u, got)
				}
			}
		})
	}
}

func TestFromBody(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		body string
		want Usage
	}{
		{
			name: "chat with details",
			kind: KindChat,
			body: `{"choices":[],"usage":{"prompt_tokens":812,"completion_tokens":96,"total_tokens":908,"prompt_tokens_details":{"cached_tokens":768},"completion_tokens_details":{"reasoning_tokens":64}}}`,
			want: Usage{PromptTokens: 812, CompletionTokens: 96, CachedTokens: 768, ReasoningTokens: 64, TotalTokens: 908, Reported: true},
		},
		{
			name: "details null",
			kind: KindChat,
			body: `{"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,"prompt_tokens_details":null,"completion_tokens_details":null}}`,
			want: Usage{PromptTokens: 5, CompletionTokens: 2, TotalTokens: 7, Reported: true},
		},
		{
			name: "missing total is prompt plus completion",
			kind: KindCompletions,
			body: `{"usage":{"prompt_tokens":5,"completion_tokens":2}}`,
			want: Usage{PromptTokens: 5, CompletionTokens: 2, TotalTokens: 7, Reported: true},
		},
		{
			name: "null total is prompt plus completion",
			kind: KindChat,
			body: `{"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":null}}`,
			want: Usage{PromptTokens: 5, CompletionTokens: 2, TotalTokens: 7, Reported: true},
		},
		{
			name: "embeddings",
			kind: KindEmbeddings,
			body: `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"text-embedding-3-large","usage":{"prompt_tokens":8,"total_tokens":8}}`,
			want: Usage{PromptTokens: 8, TotalTokens: 8, Reported: true},
		},
		{
			name: "responses names",
			kind: KindResponses,
			body: `{"id":"resp_1","object":"response","usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":8},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":123}}`,
			want: Usage{PromptTokens: 36, CompletionTokens: 87, CachedTokens: 8, ReasoningTokens: 64, TotalTokens: 123, Reported: true},
		},
		{
			name: "empty usage object is reported zero",
			kind: KindChat,
			body: `{"usage":{}}`,
			want: Usage{Reported: true},
		},
		{
			name: "usage first, whitespace around",
			kind: KindChat,
			body: "\n { \"usage\" : { \"prompt_tokens\" : 1 , \"completion_tokens\" : 1 , \"total_tokens\" : 2 } , \"choices\" : [ ] }\n",
			want: Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2, Reported: true},
		},
		{name: "usage null", kind: KindChat, body: `{"choices":[],"usage":null}`},
		{name: "no usage", kind: KindChat, body: `{"choices":[{"message":{"content":"hi"}}]}`},
		{name: "usage only nested", kind: KindChat, body: `{"choices":[{"message":{"content":"hi"},"usage":{"prompt_tokens":1}}]}`},
		{name: "usage inside a string", kind: KindChat, body: `{"choices":[{"message":{"content":"{\"usage\":{\"prompt_tokens\":1}}"}}]}`},
		{name: "usage is an array", kind: KindChat, body: `{"usage":[1,2]}`},
		{name: "cut inside usage", kind: KindChat, body: `{"choices":[],"usage":{"prompt_tokens":10,"completion_tok`},
		{name: "error body", kind: KindChat, body: `{"error":{"code":"429","message":"Rate limit is exceeded. Try again in 2 seconds."}}`},
		{name: "empty", kind: KindChat, body: ``},
		{name: "not json", kind: KindEmbeddings, body: `upstream connect error or disconnect/reset before headers`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FromBody(tt.kind, []byte(tt.body)); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// embeddingsBody returns an embeddings list of at least size bytes, as Azure
// sends it (usage last), and its usage.
func embeddingsBody(size int) ([]byte, Usage) {
	var b bytes.Buffer
	b.WriteString(`{"object":"list","data":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"object":"embedding","index":%d,"embedding":[`, i)
		for j := range 1536 {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%.9f", float64((i*1536+j)%1999-999)/1000.0)
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`],"model":"text-embedding-3-large","usage":{"prompt_tokens":51234,"total_tokens":51234}}`)
	return b.Bytes(), Usage{PromptTokens: 51234, TotalTokens: 51234, Reported: true}
}

func TestRecorder_LargeEmbeddings(t *testing.T) {
	body, want := embeddingsBody(5 << 20)
	for _, size := range []int{7, 4 << 10, 32 << 10, len(body)} {
		t.Run(fmt.Sprintf("chunks of %d", size), func(t *testing.T) {
			r := NewRecorder(KindEmbeddings)
			writeChunks(r, body, size)
			if got := r.Usage(); got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
			// The documented bound.
			if !r.truncated {
				t.Fatalf("got truncated %v, want true", r.truncated)
			}
			if len(r.buf) != recorderHead || cap(r.buf) > recorderMaxBody {
				t.Errorf("got head len %d cap %d, want len %d cap <= %d", len(r.buf), cap(r.buf), recorderHead, recorderMaxBody)
			}
			if cap(r.tail) > 2*recorderTail {
				t.Errorf("got tail cap %d, want <= %d", cap(r.tail), 2*recorderTail)
			}
		})
	}
}

func TestRecorder_Truncated(t *testing.T) {
	filler := `"data":[` + strings.Repeat(`{"object":"embedding","embedding":[0.125,-0.5]},`, 100) + `{}]`
	tests := []struct {
		name string
		kind Kind
		body string
		want Usage
	}{
		{
			name: "usage last",
			kind: KindEmbeddings,
			body: `{` + filler + `,"usage":{"prompt_tokens":3,"total_tokens":3}}`,
			want: Usage{PromptTokens: 3, TotalTokens: 3, Reported: true},
		},
		{
			name: "top-level usage before a nested one",
			kind: KindResponses,
			body: `{` + filler + `,"usage":{"input_tokens":4,"output_tokens":5,"total_tokens":9},"metadata":{"usage":{"input_tokens":999}}}` + "\n",
			want: Usage{PromptTokens: 4, CompletionTokens: 5, TotalTokens: 9, Reported: true},
		},
		{
			name: "usage in a string near the end is not usage",
			kind: KindChat,
			body: `{` + filler + `,"usage":null,"note":"\"usage\":{\"prompt_tokens\":1}"}`,
		},
		{
			name: "usage first is found in the head",
			kind: KindChat,
			body: `{"usage":{"prompt_tokens":6,"completion_tokens":1,"total_tokens":7},` + filler + `}`,
			want: Usage{PromptTokens: 6, CompletionTokens: 1, TotalTokens: 7, Reported: true},
		},
		{
			name: "no usage",
			kind: KindEmbeddings,
			body: `{` + filler + `,"model":"text-embedding-3-small"}`,
		},
		{
			name: "usage null",
			kind: KindEmbeddings,
			body: `{` + filler + `,"usage":null}`,
		},
		{
			name: "cut body",
			kind: KindEmbeddings,
			body: `{` + filler + `,"usage":{"prompt_tokens":3,"total_tok`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{1, 13, 1000, len(tt.body)} {
				// Small limits so that a few KiB exercise head and tail.
				r := &Recorder{maxBody: 1024, headBytes: 200, tailBytes: 256}
				r.Reset(tt.kind)
				writeChunks(r, []byte(tt.body), size)
				if !r.truncated {
					t.Fatalf("body of %d bytes not truncated", len(tt.body))
				}
				if got := r.Usage(); got != tt.want {
					t.Errorf("chunks of %d: got %+v, want %+v", size, got, tt.want)
				}
			}
		})
	}
}

func TestRecorder_Reset(t *testing.T) {
	big, want := embeddingsBody(2 << 20)
	r := NewRecorder(KindEmbeddings)
	writeChunks(r, big, 32<<10)
	if got := r.Usage(); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	r.Reset(KindChat)
	small := readTestdata(t, "chat.in.json")
	writeChunks(r, small, 100)
	if got, want := r.Usage(), FromBody(KindChat, small); got != want {
		t.Errorf("after Reset: got %+v, want %+v", got, want)
	}
	r.Reset(KindChat)
	if got := r.Usage(); got.Reported {
		t.Errorf("empty after Reset: got %+v, want not reported", got)
	}
}

func TestAppendWindow(t *testing.T) {
	const size = 8
	var w []byte
	var all []byte
	for i, n := range []int{1, 3, 8, 2, 9, 5, 5, 5, 1, 0, 7} {
		b := bytes.Repeat([]byte{byte('a' + i)}, n)
		all = append(all, b...)
		w = appendWindow(w, b, size)
		keep := min(len(all), size)
		if len(w) < keep || len(w) > 2*size {
			t.Fatalf("step %d: got len %d, want in [%d, %d]", i, len(w), keep, 2*size)
		}
		if got, want := string(w[len(w)-keep:]), string(all[len(all)-keep:]); got != want {
			t.Fatalf("step %d: got tail %q, want %q", i, got, want)
		}
	}
}

// writeChunks writes b to w in pieces of size bytes.
func writeChunks(w io.Writer, b []byte, size int) {
	for len(b) > 0 {
		n := min(size, len(b))
		_, _ = w.Write(b[:n])
		b = b[n:]
	}
}

// FuzzRecorder checks that the Recorder's answer never depends on how the
// body was split, with limits small enough that fuzz inputs get truncated,
// and equals FromBody for a body kept whole.
func FuzzRecorder(f *testing.F) {
	for _, name := range testdataFiles(f, "*.in.json") {
		f.Add(readTestdata(f, name), uint8(7))
	}
	f.Add([]byte(`{"data":[1,2,3],"usage":{"prompt_tokens":3,"total_tokens":3}}`), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, size uint8) {
		for _, kind := range []Kind{KindChat, KindResponses} {
			small := func() *Recorder {
				r := &Recorder{maxBody: 64, headBytes: 16, tailBytes: 48}
				r.Reset(kind)
				return r
			}
			whole, split := small(), small()
			_, _ = whole.Write(body)
			writeChunks(split, body, 1+int(size))
			if got, want := split.Usage(), whole.Usage(); got != want {
				t.Fatalf("chunks of %d: got %+v, want %+v", 1+int(size), got, want)
			}
			r := NewRecorder(kind)
			writeChunks(r, body, 1+int(size))
			if got, want := r.Usage(), FromBody(kind, body); got != want {
				t.Fatalf("got %+v, want FromBody %+v", got, want)
			}
		}
	})
}

// Recorders from the pool start empty: a reused one never reports the
// previous body's usage.
func TestRecorderPoolReuse(t *testing.T) {
	bodies := []struct {
		body string
		want int64
	}{
		{`{"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}`, 7},
		{`{"id":"x"}`, 0},
		{`{"usage":{"prompt_tokens":11,"completion_tokens":1,"total_tokens":12}}`, 11},
		{`{"id":"y","pad":"` + strings.Repeat("z", pooledMax+1) + `"}`, 0},
		{`{"id":"z"}`, 0},
	}
	for i, b := range bodies {
		r := GetRecorder(KindChat)
		_, _ = r.Write([]byte(b.body))
		if got := r.Usage(); got.PromptTokens != b.want || got.Reported != (b.want > 0) {
			t.Errorf("body %d: usage %+v, want prompt %d", i, got, b.want)
		}
		PutRecorder(r)
	}
}
