package usage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// streamResult is what a Stream reports; testdata/x.sse.golden.json holds
// it for transcript x.sse.
type streamResult struct {
	Usage   Usage  `json:"usage"`
	Events  int    `json:"events"`
	SawDone bool   `json:"saw_done"`
	Text    string `json:"text"`
}

// limits overrides a Stream's bounds; zero fields keep the defaults.
type limits struct{ maxEvent, head, tail, text int }

func (l limits) apply(s *Stream) {
	if l.maxEvent > 0 {
		s.maxEvent = l.maxEvent
	}
	if l.head > 0 {
		s.headBytes = l.head
	}
	if l.tail > 0 {
		s.tailBytes = l.tail
	}
	if l.text > 0 {
		s.textBytes = l.text
	}
}

// splitter returns the size of the next write given what is left.
type splitter func(rest int) int

func whole(rest int) int { return rest }
func bytewise(int) int   { return 1 }

func randomSplits(seed uint64, maxSize int) splitter {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	return func(int) int { return 1 + r.IntN(maxSize) }
}

// runStream feeds in through a Stream in the pieces split picks, closes it
// and returns what reached dst and what the Stream reported. Every Write
// and Close must succeed.
func runStream(t testing.TB, kind Kind, opts StreamOptions, lim limits, in []byte, split splitter) ([]byte, streamResult) {
	t.Helper()
	var out bytes.Buffer
	s := NewStream(&out, kind, opts)
	lim.apply(s)
	for rest := in; len(rest) > 0; {
		n := min(max(split(len(rest)), 1), len(rest))
		// A fresh copy per write: Stream must not keep p.
		p := append([]byte(nil), rest[:n]...)
		if got, err := s.Write(p); err != nil || got != n {
			t.Fatalf("Write(%d bytes): got %d, %v, want %d, nil", n, got, err, n)
		}
		clear(p)
		rest = rest[n:]
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: got %v, want nil", err)
	}
	return out.Bytes(), streamResult{Usage: s.Usage(), Events: s.Events(), SawDone: s.SawDone(), Text: s.Text()}
}

func TestStream_Golden(t *testing.T) {
	for _, name := range testdataFiles(t, "*.sse") {
		base := strings.TrimSuffix(name, ".sse")
		t.Run(base, func(t *testing.T) {
			in := readTestdata(t, name)
			out, got := runStream(t, kindOf(base), StreamOptions{KeepText: true}, limits{}, in, whole)
			if !bytes.Equal(out, in) {
				t.Errorf("output differs from input:\ngot  %q\nwant %q", out, in)
			}
			// name + ".golden.json": a body and a transcript may share a base.
			checkGolden(t, name+".golden.json", got)
		})
	}
}

// lineEndings returns in with its "\n" line ends, and the same with "\r\n"
// and with "\r" when in has no CR of its own.
func lineEndings(in []byte) map[string][]byte {
	v := map[string][]byte{"as-is": in}
	if bytes.IndexByte(in, '\r') < 0 {
		v["crlf"] = bytes.ReplaceAll(in, []byte("\n"), []byte("\r\n"))
		v["cr"] = bytes.ReplaceAll(in, []byte("\n"), []byte("\r"))
	}
	return v
}

// TestStream_Splits checks that neither where the input is split nor how its
// lines end changes anything: output and counts must equal feeding the
// whole transcript at once, with "\n" endings.
func TestStream_Splits(t *testing.T) {
	optionSets := []StreamOptions{{}, {StripUsageChunk: true}, {KeepText: true}, {StripUsageChunk: true, KeepText: true}}
	for _, name := range testdataFiles(t, "*.sse") {
		base := strings.TrimSuffix(name, ".sse")
		kind := kindOf(base)
		for _, opts := range optionSets {
			_, ref := runStream(t, kind, opts, limits{}, readTestdata(t, name), whole)
			for ending, in := range lineEndings(readTestdata(t, name)) {
				t.Run(fmt.Sprintf("%s/%+v/%s", base, opts, ending), func(t *testing.T) {
					wantOut, want := runStream(t, kind, opts, limits{}, in, whole)
					if want != ref {
						t.Errorf("%s endings: got %+v, want %+v", ending, want, ref)
					}
					if !opts.StripUsageChunk && !bytes.Equal(wantOut, in) {
						t.Errorf("output differs from input")
					}
					splits := map[string]splitter{"bytewise": bytewise}
					for seed := range uint64(4) {
						splits[fmt.Sprintf("random-64-%d", seed)] = randomSplits(seed, 64)
						splits[fmt.Sprintf("random-4096-%d", seed)] = randomSplits(seed, 4096)
					}
					for sname, split := range splits {
						out, got := runStream(t, kind, opts, limits{}, in, split)
						if !bytes.Equal(out, wantOut) {
							t.Errorf("%s: output differs from whole-input output:\ngot  %q\nwant %q", sname, out, wantOut)
						}
						if got != want {
							t.Errorf("%s: got %+v, want %+v", sname, got, want)
						}
					}
				})
			}
		}
	}
}

// dropUsageChunk removes from a transcript the one event that is a
// usage-only chunk, by plain string matching (an oracle independent of the
// scanner).
func dropUsageChunk(t *testing.T, in string) string {
	t.Helper()
	sep := "\n\n"
	if strings.Contains(in, "\r\n") {
		sep = "\r\n\r\n"
	}
	var b strings.Builder
	n := 0
	for _, ev := range strings.SplitAfter(in, sep) {
		if strings.Contains(ev, `"choices":[]`) && strings.Contains(ev, `"usage":{`) {
			n++
			continue
		}
		b.WriteString(ev)
	}
	if n != 1 {
		t.Fatalf("got %d usage chunks in the transcript, want 1", n)
	}
	return b.String()
}

func TestStream_StripUsageChunk(t *testing.T) {
	for _, name := range []string{
		"chat_include_usage.sse", "chat_reasoning_cached.sse", "chat_tool_calls.sse",
		"chat_crlf.sse", "completions_include_usage.sse",
	} {
		t.Run(name, func(t *testing.T) {
			in := readTestdata(t, name)
			kind := kindOf(name)
			_, plain := runStream(t, kind, StreamOptions{}, limits{}, in, whole)
			out, got := runStream(t, kind, StreamOptions{StripUsageChunk: true}, limits{}, in, whole)
			// The usage-only chunk goes, and so does the "usage":null every
			// other chunk carries once include_usage is on.
			want := strings.ReplaceAll(dropUsageChunk(t, string(in)), `,"usage":null`, "")
			if string(out) != want {
				t.Errorf("stripped output:\ngot  %q\nwant %q", out, want)
			}
			// Stripped from the client's stream, still counted.
			if !got.Usage.Reported || got.Usage != plain.Usage {
				t.Errorf("got usage %+v, want %+v", got.Usage, plain.Usage)
			}
			if got.Events != plain.Events-1 {
				t.Errorf("got %d events, want %d", got.Events, plain.Events-1)
			}
			if !got.SawDone {
				t.Errorf("got SawDone false, want true")
			}
		})
	}
}

func TestStream_Strip(t *testing.T) {
	const (
		azureFirst = `data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}],"usage":null}` + "\n\n"
		content    = `data: {"choices":[{"delta":{"content":"hi"},"index":0}],"usage":null}` + "\n\n"
		usageOnly  = `data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}` + "\n\n"
		done       = "data: [DONE]\n\n"
	)
	u4 := Usage{PromptTokens: 3, CompletionTokens: 1, TotalTokens: 4, Reported: true}
	tests := []struct {
		name    string
		kind    Kind
		opts    StreamOptions
		in      string
		want    string
		usage   Usage
		events  int
		sawDone bool
	}{
		{
			name: "usage-only chunk removed, Azure first chunk kept",
			kind: KindChat, opts: StreamOptions{StripUsageChunk: true},
			in:   azureFirst + content + usageOnly + done,
			want: azureFirst + content + done, usage: u4, events: 3, sawDone: true,
		},
		{
			name: "first chunk without a usage key kept",
			kind: KindChat, opts: StreamOptions{StripUsageChunk: true},
			in:   `data: {"choices":[],"prompt_filter_results":[]}` + "\n\n" + done,
			want: `data: {"choices":[],"prompt_filter_results":[]}` + "\n\n" + done, events: 2, sawDone: true,
		},
		{
			name: "not asked",
			kind: KindChat,
			in:   azureFirst + content + usageOnly + done,
			want: azureFirst + content + usageOnly + done, usage: u4, events: 4, sawDone: true,
		},
		{
			name: "usage on a chunk with choices is kept",
			kind: KindChat, opts: StreamOptions{StripUsageChunk: true},
			in:    `data: {"choices":[{"delta":{},"finish_reason":"stop","index":0}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}` + "\n\n" + done,
			want:  `data: {"choices":[{"delta":{},"finish_reason":"stop","index":0}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}` + "\n\n" + done,
			usage: u4, events: 2, sawDone: true,
		},
		{
			name: "spaced JSON",
			kind: KindCompletions, opts: StreamOptions{StripUsageChunk: true},
			in:   `data: { "choices" : [ ] , "usage" : { "prompt_tokens" : 3 , "completion_tokens" : 1 } }` + "\n\n" + done,
			want: done, usage: u4, events: 1, sawDone: true,
		},
		{
			name: "whole event goes: id, event, comment and multi-line data",
			kind: KindChat, opts: StreamOptions{StripUsageChunk: true},
			in:   content + "id: 7\nevent: message\n: usage follows\ndata: {\"choices\":[],\ndata: \"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n" + done,
			want: content + done, usage: u4, events: 2, sawDone: true,
		},
		{
			name: "invalid JSON is not usage",
			kind: KindChat, opts: StreamOptions{StripUsageChunk: true},
			in:   `data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}` + "\n\n" + done,
			want: `data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}` + "\n\n" + done, events: 2, sawDone: true,
		},
		{
			name: "ignored for embeddings",
			kind: KindEmbeddings, opts: StreamOptions{StripUsageChunk: true},
			in: usageOnly + done, want: usageOnly + done, usage: u4, events: 2, sawDone: true,
		},
		{
			name: "ignored for responses",
			kind: KindResponses, opts: StreamOptions{StripUsageChunk: true},
			in:    "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"choices\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1,\"total_tokens\":4}}}\n\n",
			want:  "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"choices\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1,\"total_tokens\":4}}}\n\n",
			usage: u4, events: 1, sawDone: true,
		},
		{
			name:  "last usage wins (continuous usage stats)",
			kind:  KindChat,
			in:    `data: {"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":3,"completion_tokens":0}}` + "\n\n" + usageOnly,
			want:  `data: {"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":3,"completion_tokens":0}}` + "\n\n" + usageOnly,
			usage: u4, events: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, split := range []splitter{whole, bytewise} {
				out, got := runStream(t, tt.kind, tt.opts, limits{}, []byte(tt.in), split)
				wantOut := tt.want
				if tt.opts.StripUsageChunk && (tt.kind == KindChat || tt.kind == KindCompletions) {
					wantOut = strings.ReplaceAll(wantOut, `,"usage":null`, "")
				}
				if string(out) != wantOut {
					t.Errorf("got output %q, want %q", out, wantOut)
				}
				want := streamResult{Usage: tt.usage, Events: tt.events, SawDone: tt.sawDone}
				if got != want {
					t.Errorf("got %+v, want %+v", got, want)
				}
			}
		})
	}
}

// TestStream_StripCRLFSplit strips an event whose "\r\n" blank line is split
// between two writes: the LF must go with the event it ends.
func TestStream_StripCRLFSplit(t *testing.T) {
	in := "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\r\n\r"
	var out bytes.Buffer
	s := NewStream(&out, KindChat, StreamOptions{StripUsageChunk: true})
	for _, p := range []string{in, "\ndata: [DONE]\r\n\r", "\n"} {
		if _, err := s.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "data: [DONE]\r\n\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestStream_Incremental checks that an event is forwarded as soon as its
// blank line arrives, not later, and not before.
func TestStream_Incremental(t *testing.T) {
	var out bytes.Buffer
	s := NewStream(&out, KindChat, StreamOptions{StripUsageChunk: true})
	steps := []struct{ write, want string }{
		{`data: {"choices":[{"delta":{"content":"he`, ""},
		{`llo"}}]}` + "\n", ""},
		{"\n", `data: {"choices":[{"delta":{"content":"hello"}}]}` + "\n\n"},
		{": ping\n\ndata: [DO", `data: {"choices":[{"delta":{"content":"hello"}}]}` + "\n\n: ping\n\n"},
		{"NE]\n\n", `data: {"choices":[{"delta":{"content":"hello"}}]}` + "\n\n: ping\n\ndata: [DONE]\n\n"},
	}
	for i, st := range steps {
		if _, err := s.Write([]byte(st.write)); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); got != st.want {
			t.Errorf("after write %d: got %q, want %q", i, got, st.want)
		}
	}
}

func TestStream_Close(t *testing.T) {
	tests := []struct {
		name    string
		opts    StreamOptions
		in      string
		want    string
		usage   Usage
		events  int
		sawDone bool
	}{
		{
			name:   "cut mid-line: forwarded, not read",
			in:     "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}",
			want:   "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}",
			events: 1,
		},
		{
			name:  "cut before the blank line: read",
			in:    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n",
			want:  "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n",
			usage: Usage{PromptTokens: 3, CompletionTokens: 1, TotalTokens: 4, Reported: true}, events: 2, sawDone: true,
		},
		{
			name:  "usage chunk without its blank line is still stripped",
			opts:  StreamOptions{StripUsageChunk: true},
			in:    "data: [DONE]\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\r\n",
			want:  "data: [DONE]\n\n",
			usage: Usage{PromptTokens: 3, CompletionTokens: 1, TotalTokens: 4, Reported: true}, events: 1, sawDone: true,
		},
		{
			name: "cut [DONE]",
			in:   "data: [DO",
			want: "data: [DO",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, got := runStream(t, KindChat, tt.opts, limits{}, []byte(tt.in), bytewise)
			if string(out) != tt.want {
				t.Errorf("got output %q, want %q", out, tt.want)
			}
			want := streamResult{Usage: tt.usage, Events: tt.events, SawDone: tt.sawDone}
			if got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestStream_WriteAfterClose(t *testing.T) {
	s := NewStream(io.Discard, KindChat, StreamOptions{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("data: x\n\n")); err == nil {
		t.Errorf("got nil error, want one")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
}

// failWriter fails every write after the first n bytes.
type failWriter struct {
	n   int
	err error
	bytes.Buffer
}

func (w *failWriter) Write(p []byte) (int, error) {
	if w.Len()+len(p) > w.n {
		return 0, w.err
	}
	return w.Buffer.Write(p)
}

// TestStream_DstError checks that a client going away stops forwarding but
// not counting: a caller may keep draining the upstream for usage.
func TestStream_DstError(t *testing.T) {
	in := readTestdata(t, "chat_include_usage.sse")
	_, want := runStream(t, KindChat, StreamOptions{}, limits{}, in, whole)
	gone := errors.New("client gone")
	dst := &failWriter{n: 1000, err: gone}
	s := NewStream(dst, KindChat, StreamOptions{})
	var firstErr error
	for p := in; len(p) > 0; p = p[min(300, len(p)):] {
		n, err := s.Write(p[:min(300, len(p))])
		if n != min(300, len(p)) {
			t.Fatalf("got n %d, want %d", n, min(300, len(p)))
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if firstErr != nil && !errors.Is(err, gone) {
			t.Fatalf("got %v, want the sticky %v", err, gone)
		}
	}
	if err := s.Close(); !errors.Is(err, gone) {
		t.Errorf("Close: got %v, want %v", err, gone)
	}
	if !errors.Is(firstErr, gone) {
		t.Fatalf("got %v, want %v", firstErr, gone)
	}
	if dst.Len() > 1000 || !bytes.HasPrefix(in, dst.Bytes()) {
		t.Errorf("got %d bytes forwarded, want a prefix of at most 1000", dst.Len())
	}
	if got := s.Usage(); got != want.Usage {
		t.Errorf("got %+v, want %+v", got, want.Usage)
	}
}

// bigResponsesCompleted returns a response.completed event of about size
// bytes whose usage object sits
// about usageFromEnd bytes before its end.
func bigResponsesCompleted(size, usageFromEnd int) string {
	text := strings.Repeat("All work and no play makes a dull gateway. ", size/44)
	return "event: response.completed\n" +
		`data: {"type":"response.completed","sequence_number":9,"response":{"id":"resp_1","object":"response","status":"completed",` +
		`"output":[{"type":"message","content":[{"type":"output_text","text":"` + text + `"}]}],` +
		`"usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":0},"output_tokens":262144,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":262156},` +
		`"metadata":{"pad":"` + strings.Repeat("x", usageFromEnd) + `"}}}` + "\n\n"
}

func TestStream_BigEvent(t *testing.T) {
	responsesUsage := Usage{PromptTokens: 12, CompletionTokens: 262144, TotalTokens: 262156, Reported: true}
	bigChunk := `data: {"choices":[],"content":"` + strings.Repeat("z", 2<<20) + `","usage":{"prompt_tokens":3,"completion_tokens":1}}` + "\n\n"
	tests := []struct {
		name    string
		kind    Kind
		opts    StreamOptions
		in      string
		want    streamResult
		strips  bool
		limited limits
	}{
		{
			name: "response.completed over 1 MiB",
			kind: KindResponses,
			in:   "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n" + bigResponsesCompleted(3<<19, 10),
			want: streamResult{Usage: responsesUsage, Events: 2, SawDone: true},
		},
		{
			name: "usage beyond the tail window is not found",
			kind: KindResponses,
			in:   bigResponsesCompleted(3<<19, eventTailBytes),
			want: streamResult{Events: 1, SawDone: true},
		},
		{
			name: "big chat chunk is passed through, never stripped",
			kind: KindChat,
			opts: StreamOptions{StripUsageChunk: true, KeepText: true},
			in:   bigChunk + "data: [DONE]\n\n",
			want: streamResult{Usage: Usage{PromptTokens: 3, CompletionTokens: 1, TotalTokens: 4, Reported: true}, Events: 2, SawDone: true},
		},
		{
			name: "big comment is not an event",
			kind: KindChat,
			in:   ": " + strings.Repeat("-", 3<<19) + "\n\ndata: [DONE]\n\n",
			want: streamResult{Events: 1, SawDone: true},
		},
		{
			name:    "small limits: type from the data, CRLF",
			kind:    KindResponses,
			limited: limits{maxEvent: 64, head: 32, tail: 200},
			in: "data: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"server_error\",\"message\":\"The model failed.\"}," +
				"\"usage\":{\"input_tokens\":5,\"output_tokens\":0}}}\r\n\r\n",
			want: streamResult{Usage: Usage{PromptTokens: 5, TotalTokens: 5, Reported: true}, Events: 1, SawDone: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for sname, split := range map[string]splitter{
				"whole": whole, "32KiB": func(int) int { return 32 << 10 }, "random": randomSplits(1, 70000), "7": func(int) int { return 7 },
			} {
				out, got := runStream(t, tt.kind, tt.opts, tt.limited, []byte(tt.in), split)
				if string(out) != tt.in {
					t.Errorf("%s: output differs from input (%d vs %d bytes)", sname, len(out), len(tt.in))
				}
				if got != tt.want {
					t.Errorf("%s: got %+v, want %+v", sname, got, tt.want)
				}
			}
		})
	}
}

func TestStream_Text(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		in   string
		lim  limits
		want string
	}{
		{
			name: "escapes and surrogate pairs",
			kind: KindChat,
			in:   `data: {"choices":[{"delta":{"content":"a\"b\\c\/d\n\t\u00e9\ud83d\ude00 \u20ac"}}]}` + "\n\n",
			want: "a\"b\\c/d\n\té😀 €",
		},
		{
			name: "n choices, tool calls, reasoning_content",
			kind: KindChat,
			in: `data: {"choices":[{"index":0,"delta":{"reasoning_content":"think "}},{"index":1,"delta":{"content":"two "}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}},{"index":1,"function":{"name":"f","arguments":"[]"}}]}}]}` + "\n\n",
			want: "think two {\"a\":1}[]",
		},
		{
			name: "null content",
			kind: KindChat,
			in:   `data: {"choices":[{"delta":{"content":null,"role":"assistant"}}]}` + "\n\n",
			want: "",
		},
		{
			name: "legacy completions",
			kind: KindCompletions,
			in:   `data: {"choices":[{"text":" Once","index":0}]}` + "\n\n" + `data: {"choices":[{"text":" upon","index":0}]}` + "\n\n",
			want: " Once upon",
		},
		{
			name: "responses deltas only",
			kind: KindResponses,
			in: "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n" +
				"data: {\"sequence_number\":3, \"type\": \"response.output_text.delta\",\"delta\":\" there\"}\n\n" +
				"event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"text\":\"Hi there\"}\n\n",
			want: "Hi there",
		},
		{
			name: "capped on a rune boundary",
			kind: KindChat,
			in:   `data: {"choices":[{"delta":{"content":"ééééé"}}]}` + "\n\n" + `data: {"choices":[{"delta":{"content":"more"}}]}` + "\n\n",
			lim:  limits{text: 5},
			want: "éé",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := runStream(t, tt.kind, StreamOptions{KeepText: true}, tt.lim, []byte(tt.in), bytewise)
			if got.Text != tt.want {
				t.Errorf("got %q, want %q", got.Text, tt.want)
			}
			_, got = runStream(t, tt.kind, StreamOptions{}, tt.lim, []byte(tt.in), whole)
			if got.Text != "" {
				t.Errorf("without KeepText: got %q, want none", got.Text)
			}
		})
	}
}

func TestStream_BOM(t *testing.T) {
	in := "\xEF\xBB\xBFdata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n"
	out, got := runStream(t, KindChat, StreamOptions{}, limits{}, []byte(in), bytewise)
	if string(out) != in {
		t.Errorf("got %q, want %q", out, in)
	}
	want := streamResult{Usage: Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2, Reported: true}, Events: 2, SawDone: true}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestStream_Reset(t *testing.T) {
	var a, b bytes.Buffer
	s := NewStream(&a, KindResponses, StreamOptions{KeepText: true})
	_, _ = s.Write(readTestdata(t, "responses.sse"))
	_, _ = s.Write([]byte("data: {\"type\":\"response.output_text.delta\",\"delta\":\"held"))
	s.Reset(&b, KindChat, StreamOptions{})
	in := readTestdata(t, "chat_no_usage.sse")
	_, _ = s.Write(in)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, want := runStream(t, KindChat, StreamOptions{}, limits{}, in, whole)
	got := streamResult{Usage: s.Usage(), Events: s.Events(), SawDone: s.SawDone(), Text: s.Text()}
	if got != want || b.String() != string(in) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// FuzzStream checks, for any input and any split: without stripping the
// output is the input byte for byte and Write never fails; with any options
// and tiny limits (so the pass-through path runs), feeding the input whole
// or split gives the same output and counts.
func FuzzStream(f *testing.F) {
	for i, name := range testdataFiles(f, "*.sse") {
		f.Add(readTestdata(f, name), uint64(i), uint8(i*37))
	}
	f.Add([]byte("data: x\r\n\r\ndata: y\r\r\n\n:\n\n"), uint64(1), uint8(0x0f))
	f.Add([]byte("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\r\n\r"), uint64(2), uint8(0x07))
	kinds := []Kind{KindChat, KindCompletions, KindEmbeddings, KindResponses}
	f.Fuzz(func(t *testing.T, in []byte, seed uint64, flags uint8) {
		kind := kinds[flags&3]
		opts := StreamOptions{KeepText: flags&4 != 0}
		out, _ := runStream(t, kind, opts, limits{}, in, randomSplits(seed, 1+int(flags>>4)*16))
		if !bytes.Equal(out, in) {
			t.Fatalf("output differs from input:\ngot  %q\nwant %q", out, in)
		}

		opts.StripUsageChunk = flags&8 != 0
		lim := limits{maxEvent: 24 + int(flags>>4), head: 16, tail: 48, text: 64}
		wantOut, want := runStream(t, kind, opts, lim, in, whole)
		out, got := runStream(t, kind, opts, lim, in, randomSplits(seed, 1+int(flags>>4)))
		if !bytes.Equal(out, wantOut) || got != want {
			t.Fatalf("split differs from whole:\ngot  %q %+v\nwant %q %+v", out, got, wantOut, want)
		}
		if !utf8.ValidString(got.Text) && utf8.Valid(in) {
			// Text is cut on rune boundaries; only invalid input may give
			// invalid text.
			t.Fatalf("text %q is not valid UTF-8", got.Text)
		}
	})
}
