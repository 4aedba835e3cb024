package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/embedded"
	"github.com/foundry-gateway/gateway/internal/store/tables"
	"github.com/foundry-gateway/gateway/internal/usage"
)

var az azurite.Shared

func TestMain(m *testing.M) { os.Exit(az.Run(m)) }

var tableSeq atomic.Int64

// stores returns the stores a test runs against: embedded and Azurite.
func stores(t *testing.T) map[string]func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) store.Store{
		"embedded": func(t *testing.T) store.Store {
			st, err := embedded.Open(filepath.Join(t.TempDir(), "t.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
		"azurite": func(t *testing.T) store.Store {
			st, err := tables.NewFromConnectionString(az.Start(t).ConnectionString())
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
	}
}

func testConfig(mode string) config.CacheConfig {
	var c config.Config
	c.Models = map[string]config.Model{"gpt": {}, "embed": {}}
	c.Cache.Models = map[string]config.CacheModel{"gpt": {Mode: mode}}
	c.Cache.Semantic.EmbeddingModel = "embed"
	cc := c.Cache
	// the defaults Load applies
	cc.Partition, cc.TTL, cc.MaxEntryBytes, cc.MemoryBytes = "team", config.Duration(time.Hour), 256<<10, 1<<20
	cc.Semantic.ScoreThreshold, cc.Semantic.IndexEntries = 0.2, 100
	return cc
}

func newCache(t *testing.T, st store.Store, cfg config.CacheConfig, now func() time.Time) *Cache {
	t.Helper()
	e, v, err := OpenTables(context.Background(), st, fmt.Sprintf("C%d", tableSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	c := New(cfg, e, v, slog.New(slog.NewTextHandler(io.Discard, nil)), now)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func chatReq(t *testing.T, body string) openai.Request {
	t.Helper()
	r, err := openai.Parse(openai.OpChat, openai.StyleV1, "", "", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestKeyIgnoresNonSemanticFields(t *testing.T) {
	base := `{"model":"gpt","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`
	same := []string{
		`{"max_tokens":5,"messages":[{"content":"hi","role":"user"}],"model":"gpt"}`,
		`{"model":"gpt","stream":true,"stream_options":{"include_usage":true},"user":"u1","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`,
		`{"model":"gpt","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"metadata":{"a":"b"},"safety_identifier":"x"}`,
	}
	differ := []string{
		`{"model":"gpt","messages":[{"role":"user","content":"hi!"}],"max_tokens":5}`,
		`{"model":"gpt","messages":[{"role":"user","content":"hi"}],"max_tokens":6}`,
		`{"model":"gpt","messages":[{"role":"user","content":"hi"}],"max_tokens":5.0}`,
		`{"model":"gpt","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"temperature":0}`,
		`{"model":"gpt","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"store":false}`,
	}
	key := func(part, b string) string {
		r, err := parse(part, chatReq(t, b), []byte(b), semanticRules{})
		if err != nil {
			t.Fatal(err)
		}
		return r.key
	}
	want := key("team:a", base)
	for _, b := range same {
		if got := key("team:a", b); got != want {
			t.Errorf("%s: key differs from the base request's", b)
		}
	}
	for _, b := range differ {
		if got := key("team:a", b); got == want {
			t.Errorf("%s: same key as the base request", b)
		}
	}
	if key("team:b", base) == want {
		t.Error("two partitions share a key")
	}
}

func TestSemanticEligibility(t *testing.T) {
	tests := []struct {
		body     string
		rules    semanticRules
		semantic bool
		text     string
	}{
		{`{"messages":[{"role":"user","content":"What is Go?"}]}`, semanticRules{}, true, "What is Go?"},
		{`{"messages":[{"role":"user","content":"What is Go?"}],"temperature":0}`, semanticRules{}, true, "What is Go?"},
		{`{"messages":[{"role":"user","content":"What is Go?"}],"temperature":0.7}`, semanticRules{}, false, ""},
		{`{"messages":[{"role":"user","content":"What is Go?"}],"temperature":0.7}`, semanticRules{allowSampling: true}, true, "What is Go?"},
		{`{"messages":[{"role":"user","content":"What is Go?"}],"n":2}`, semanticRules{}, false, ""},
		{`{"messages":[{"role":"user","content":"What is Go?"}],"tools":[{"type":"function","function":{"name":"f"}}]}`, semanticRules{}, false, ""},
		{`{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"What is Go?"}]}]}`, semanticRules{}, true, "system: Be brief.\nWhat is Go?"},
		{`{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is Go?"}]}`, semanticRules{ignoreSystem: true}, true, "What is Go?"},
	}
	for _, tt := range tests {
		r, err := parse("p", chatReq(t, `{"model":"gpt",`+tt.body[1:]), []byte(tt.body), tt.rules)
		if err != nil {
			t.Fatal(err)
		}
		if r.semantic != tt.semantic || tt.semantic && r.text != tt.text {
			t.Errorf("%s %+v: got semantic %v text %q (%s), want %v %q", tt.body, tt.rules, r.semantic, r.text, r.why, tt.semantic, tt.text)
		}
	}
	// ignoreSystemMessages keeps the system message in the variant.
	a, _ := parse("p", chatReq(t, `{"model":"gpt","messages":[]}`), []byte(`{"messages":[{"role":"system","content":"A"},{"role":"user","content":"q"}]}`), semanticRules{ignoreSystem: true})
	b, _ := parse("p", chatReq(t, `{"model":"gpt","messages":[]}`), []byte(`{"messages":[{"role":"system","content":"B"},{"role":"user","content":"q"}]}`), semanticRules{ignoreSystem: true})
	if a.variant == b.variant {
		t.Error("different system messages share a variant")
	}
}

func TestQuantisedCosine(t *testing.T) {
	a := make([]float32, 512)
	b := make([]float32, 512)
	var dot, na, nb float64
	for i := range a {
		a[i] = float32(math.Sin(float64(i)))
		b[i] = float32(math.Sin(float64(i)*1.01 + 0.3))
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	want := dot / math.Sqrt(na*nb)
	qa, _ := quantise(a)
	qb, _ := quantise(b)
	rb, err := vecFrom(qb.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got := cosine(qa, rb); math.Abs(got-want) > 0.01 {
		t.Errorf("cosine: got %v, want %v ± 0.01", got, want)
	}
	if _, err := quantise(make([]float32, 8)); err == nil {
		t.Error("a zero vector was accepted")
	}
	if _, err := quantise([]float32{1, float32(math.NaN())}); err == nil {
		t.Error("a NaN vector was accepted")
	}
}

func TestLRUEvictsBySize(t *testing.T) {
	l := newLRU(3 * (100 + 256))
	e := func() *Entry { return &Entry{Body: bytes.Repeat([]byte("x"), 100)} }
	l.put("a", e())
	l.put("b", e())
	l.put("c", e())
	l.get("a") // a is now the most recent
	l.put("d", e())
	if l.get("b") != nil {
		t.Error("b (least recent) was not evicted")
	}
	for _, k := range []string{"a", "c", "d"} {
		if l.get(k) == nil {
			t.Errorf("%s was evicted", k)
		}
	}
	l.put("huge", &Entry{Body: make([]byte, 10_000)})
	if l.get("huge") != nil {
		t.Error("an entry larger than the whole LRU was kept")
	}
}

const chatAnswer = `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Go is a programming language designed at Google for simple, reliable and efficient software at scale, with goroutines.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32}}`

// miss runs a lookup that misses and stores body as the answer.
func miss(t *testing.T, c *Cache, call Call, embed Embedder, body string, ct string) *Lookup {
	t.Helper()
	l := c.Lookup(context.Background(), call, embed)
	if l == nil || l.Status != Miss {
		t.Fatalf("lookup: got %+v, want a miss", l)
	}
	rec := httptest.NewRecorder()
	w := l.Capture(rec)
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, body)
	l.Store(Result{Status: 200, Complete: true, Usage: usage.Usage{PromptTokens: 12, CompletionTokens: 20, TotalTokens: 32, Reported: true}, Backend: "b", Deployment: "d"})
	if got := rec.Header().Get(Header); got != Miss {
		t.Errorf("miss header: got %q", got)
	}
	return l
}

func TestExactHitFromTableAfterRestart(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			cfg := testConfig(config.CacheExact)
			e, v, err := OpenTables(context.Background(), st, fmt.Sprintf("C%d", tableSeq.Add(1)))
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			c1 := New(cfg, e, v, log, nil)
			body := `{"model":"gpt","messages":[{"role":"user","content":"What is Go?"}]}`
			call := Call{Req: chatReq(t, body), Body: []byte(body), Header: http.Header{}, Team: "a", KeyID: "k1"}
			// A big answer: several 64 KiB body properties.
			big := strings.Replace(chatAnswer, "Go is", strings.Repeat("Go is ", 25_000), 1)
			miss(t, c1, call, nil, big, "application/json")
			if err := c1.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			// Another instance (empty memory) reads it from the table.
			c2 := New(cfg, e, v, log, nil)
			l := c2.Lookup(context.Background(), call, nil)
			if l.Status != Hit || l.Kind != "exact" {
				t.Fatalf("got %s %s, want an exact hit", l.Status, l.Kind)
			}
			if string(l.Entry.Body) != big || l.Entry.Usage.TotalTokens != 32 || l.Entry.Backend != "b" {
				t.Errorf("entry: %d bytes, usage %+v, backend %q", len(l.Entry.Body), l.Entry.Usage, l.Entry.Backend)
			}
			// Another team: no hit.
			other := call
			other.Team = "b"
			if l := c2.Lookup(context.Background(), other, nil); l.Status != Miss {
				t.Errorf("other team: got %s, want miss", l.Status)
			}
		})
	}
}

func TestExpiryBypassAndRefusals(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	for name, open := range stores(t) {
		if name != "embedded" {
			continue
		}
		c := newCache(t, open(t), testConfig(config.CacheExact), clock)
		body := `{"model":"gpt","messages":[{"role":"user","content":"What is Go?"}]}`
		call := Call{Req: chatReq(t, body), Body: []byte(body), Header: http.Header{}, Team: "a"}
		miss(t, c, call, nil, chatAnswer, "application/json")
		for _, tt := range []struct {
			hdr, want string
		}{{"", Hit}, {"x-gateway-cache: bypass", Bypass}, {"cache-control: no-store", Bypass}, {"cache-control: max-age=0, no-cache", Miss}} {
			h := http.Header{}
			if k, v, ok := strings.Cut(tt.hdr, ": "); ok {
				h.Set(k, v)
			}
			c2 := call
			c2.Header = h
			if l := c.Lookup(context.Background(), c2, nil); l.Status != tt.want {
				t.Errorf("%q: got %s, want %s", tt.hdr, l.Status, tt.want)
			}
		}
		now = now.Add(time.Hour + time.Second)
		if l := c.Lookup(context.Background(), call, nil); l.Status != Miss {
			t.Errorf("after the TTL: got %s, want miss", l.Status)
		}
		// Not stored: a non-200, an incomplete answer, unreported usage, too big.
		for _, res := range []Result{{Status: 500, Complete: true, Usage: usage.Usage{Reported: true}},
			{Status: 200, Complete: false, Usage: usage.Usage{Reported: true}}, {Status: 200, Complete: true}} {
			l := c.Lookup(context.Background(), call, nil)
			w := l.Capture(httptest.NewRecorder())
			w.WriteHeader(res.Status)
			_, _ = io.WriteString(w, chatAnswer)
			l.Store(res)
			if l := c.Lookup(context.Background(), call, nil); l.Status != Miss {
				t.Errorf("%+v was stored", res)
			}
		}
		// Not cached at all: another model, another op.
		other := `{"model":"embed","input":"x"}`
		if l := c.Lookup(context.Background(), Call{Req: openai.Request{Op: openai.OpEmbeddings, Model: "embed"}, Body: []byte(other), Header: http.Header{}}, nil); l != nil {
			t.Errorf("uncached model: got %+v", l)
		}
	}
}

func TestStreamAssembledAndReplayed(t *testing.T) {
	st, _ := embedded.Open(filepath.Join(t.TempDir(), "t.db"))
	defer st.Close()
	c := newCache(t, st, testConfig(config.CacheExact), nil)
	stream := `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}

data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}

data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" world"},"finish_reason":null}]}

data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

data: [DONE]

`
	sbody := `{"model":"gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	miss(t, c, Call{Req: chatReq(t, sbody), Body: []byte(sbody), Header: http.Header{}, Team: "a"}, nil, stream, "text/event-stream")
	// The same request without stream gets the assembled JSON.
	jbody := `{"model":"gpt","messages":[{"role":"user","content":"hi"}]}`
	l := c.Lookup(context.Background(), Call{Req: chatReq(t, jbody), Body: []byte(jbody), Header: http.Header{}, Team: "a"}, nil)
	if l.Status != Hit {
		t.Fatalf("got %s, want hit", l.Status)
	}
	rec := httptest.NewRecorder()
	if err := l.Serve(rec); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rec.Body.String(), `"content":"Hello world"`) || !strings.Contains(rec.Body.String(), `"total_tokens":32`) {
		t.Errorf("assembled: %s", rec.Body)
	}
	// With stream and include_usage: chunks, the usage chunk and [DONE].
	ubody := `{"model":"gpt","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`
	l = c.Lookup(context.Background(), Call{Req: chatReq(t, ubody), Body: []byte(ubody), Header: http.Header{}, Team: "a"}, nil)
	rec = httptest.NewRecorder()
	if err := l.Serve(rec); err != nil {
		t.Fatal(err)
	}
	ev := sseEvents(rec.Body.Bytes())
	if rec.Header().Get("Content-Type") != "text/event-stream" || string(ev[len(ev)-1]) != "[DONE]" ||
		!bytes.Contains(ev[len(ev)-2], []byte(`"total_tokens":32`)) {
		t.Errorf("replay: %s", rec.Body)
	}
	again, err := assemble(openai.OpChat, rec.Body.Bytes(), usage.Usage{PromptTokens: 12, CompletionTokens: 20, TotalTokens: 32})
	if err != nil || !bytes.Contains(again, []byte(`"content":"Hello world"`)) {
		t.Errorf("replayed stream does not assemble back: %v %s", err, again)
	}
	// A stream cut before [DONE] is not stored.
	if _, err := assemble(openai.OpChat, []byte(stream[:strings.Index(stream, "data: [DONE]")]), usage.Usage{}); err == nil {
		t.Error("a cut stream assembled")
	}
}

// wordEmbed is a test embedder: one dimension per known word.
func wordEmbed(calls *int) Embedder {
	words := []string{"capital", "france", "paris", "weather", "rain", "go", "language"}
	return func(_ context.Context, alias, text string) ([]float32, error) {
		*calls++
		v := make([]float32, len(words)+1)
		v[len(words)] = 0.01
		for i, w := range words {
			if strings.Contains(strings.ToLower(text), w) {
				v[i] = 1
			}
		}
		return v, nil
	}
}

func TestSemanticHitAcrossInstances(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			cfg := testConfig(config.CacheSemantic)
			e, v, err := OpenTables(context.Background(), st, fmt.Sprintf("C%d", tableSeq.Add(1)))
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			calls := 0
			c1 := New(cfg, e, v, log, nil)
			mk := func(text string, team string) Call {
				b := fmt.Sprintf(`{"model":"gpt","messages":[{"role":"user","content":%q}]}`, text)
				return Call{Req: chatReq(t, b), Body: []byte(b), Header: http.Header{}, Team: team}
			}
			miss(t, c1, mk("What is the capital of France?", "a"), wordEmbed(&calls), chatAnswer, "application/json")
			_ = c1.Close(context.Background())
			c2 := New(cfg, e, v, log, nil) // loads the index from the table
			l := c2.Lookup(context.Background(), mk("Capital of France, please", "a"), wordEmbed(&calls))
			if l.Status != Hit || l.Kind != "semantic" || l.Score > 0.01 {
				t.Fatalf("paraphrase: got %s %s %v, want a semantic hit", l.Status, l.Kind, l.Score)
			}
			if l := c2.Lookup(context.Background(), mk("Will it rain? weather", "a"), wordEmbed(&calls)); l.Status != Miss {
				t.Errorf("unrelated: got %s", l.Status)
			}
			if l := c2.Lookup(context.Background(), mk("What is the capital of France?", "b"), wordEmbed(&calls)); l.Status != Miss {
				t.Errorf("other team: got %s", l.Status)
			}
			// Sampling: exact only, no embedding call.
			before := calls
			b := `{"model":"gpt","temperature":1,"messages":[{"role":"user","content":"Capital of France, please"}]}`
			if l := c2.Lookup(context.Background(), Call{Req: chatReq(t, b), Body: []byte(b), Header: http.Header{}, Team: "a"}, wordEmbed(&calls)); l.Status != Miss || calls != before {
				t.Errorf("temperature 1: got %s with %d embedding calls", l.Status, calls-before)
			}
		})
	}
}

func usageOf(string) usage.Usage {
	return usage.Usage{PromptTokens: 12, CompletionTokens: 20, TotalTokens: 32, Reported: true}
}

// TestSemanticIndexTopsUp: an instance that loaded a partition's index
// sees another instance's new entries after the refresh interval.
func TestSemanticIndexTopsUp(t *testing.T) {
	st, err := embedded.Open(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	e, v, err := OpenTables(context.Background(), st, "T")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := New(testConfig(config.CacheSemantic), e, v, log, clock)
	b := New(testConfig(config.CacheSemantic), e, v, log, clock)
	calls := 0
	mk := func(text string) Call {
		body := fmt.Sprintf(`{"model":"gpt","messages":[{"role":"user","content":%q}]}`, text)
		return Call{Req: chatReq(t, body), Body: []byte(body), Header: http.Header{}, Team: "a"}
	}
	// b loads the (empty) index of the partition.
	if l := b.Lookup(context.Background(), mk("weather and rain"), wordEmbed(&calls)); l.Status != Miss {
		t.Fatalf("got %s", l.Status)
	}
	now = now.Add(time.Second)
	miss(t, a, mk("What is the capital of France?"), wordEmbed(&calls), chatAnswer, "application/json")
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	now = now.Add(5 * time.Second)
	if l := b.Lookup(context.Background(), mk("France: its capital?"), wordEmbed(&calls)); l.Status != Miss {
		t.Errorf("before the refresh: got %s, want miss (index loaded 6 s ago)", l.Status)
	}
	now = now.Add(30 * time.Second)
	if l := b.Lookup(context.Background(), mk("France: its capital?"), wordEmbed(&calls)); l.Status != Hit || l.Kind != "semantic" {
		t.Errorf("after the refresh: got %s %s, want a semantic hit", l.Status, l.Kind)
	}
}

// TestReplayAssembleRoundTrip: every replayable answer, replayed as a
// stream and assembled back, is the same answer (chat with tool calls and
// a refusal, completions, Responses).
func TestReplayAssembleRoundTrip(t *testing.T) {
	u := usage.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7, Reported: true}
	tests := []struct {
		op   openai.Op
		body string
		want []string // substrings of the assembled answer
	}{
		{openai.OpChat, `{"id":"c","object":"chat.completion","created":5,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"},{"index":1,"message":{"role":"assistant","content":null,"refusal":"no"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`,
			[]string{`"arguments":"{\"a\":1}"`, `"name":"f"`, `"finish_reason":"tool_calls"`, `"refusal":"no"`, `"index":1`}},
		{openai.OpCompletions, `{"id":"x","object":"text_completion","created":5,"model":"m","choices":[{"index":0,"text":"once upon a time","logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`,
			[]string{`"object":"text_completion"`, `"text":"once upon a time"`, `"finish_reason":"length"`}},
		{openai.OpResponses, `{"id":"resp_1","object":"response","status":"completed","output":[{"id":"rs_1","type":"reasoning","summary":[]},{"id":"msg_1","type":"message","role":"assistant","status":"completed","content":[{"type":"output_text","text":"hello there","annotations":[]}]}],"usage":{"input_tokens":3,"output_tokens":4,"total_tokens":7}}`,
			[]string{`"id":"resp_1"`, `"text":"hello there"`, `"type":"reasoning"`, `"status":"completed"`}},
	}
	for _, tt := range tests {
		t.Run(string(tt.op), func(t *testing.T) {
			var buf bytes.Buffer
			if err := replay(&buf, tt.op, []byte(tt.body), true); err != nil {
				t.Fatal(err)
			}
			got, err := assemble(tt.op, buf.Bytes(), u)
			if err != nil {
				t.Fatalf("%v\n%s", err, buf.String())
			}
			for _, w := range tt.want {
				if !bytes.Contains(got, []byte(w)) {
					t.Errorf("assembled answer lacks %s:\n%s", w, got)
				}
			}
		})
	}
	if err := replay(io.Discard, openai.OpEmbeddings, []byte(`{}`), false); err == nil {
		t.Error("embeddings were replayed as a stream")
	}
}

// failingTable fails every query, counting them.
type failingTable struct {
	store.Table
	queries int
}

func (f *failingTable) Query(context.Context, store.Query) ([]store.Entity, error) {
	f.queries++
	return nil, fmt.Errorf("store down")
}

// TestIndexLoadFailureBacksOff: while the vectors table fails, searches
// are misses and the table is asked at most once per loadRetry.
func TestIndexLoadFailureBacksOff(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := &failingTable{}
	x := &index{parts: map[string]*partIndex{}, t: f, cap: 10, refresh: 30 * time.Second}
	v, _ := quantise([]float32{1, 0, 0})
	for i := range 10 {
		key, _, err := x.search(context.Background(), "pk", "v", v, now.Add(time.Duration(i)*100*time.Millisecond))
		if key != "" || i == 0 && err == nil {
			t.Fatalf("search %d: key %q err %v", i, key, err)
		}
	}
	if f.queries != 1 {
		t.Errorf("%d table queries in 1 s of searches, want 1", f.queries)
	}
	_, _, _ = x.search(context.Background(), "pk", "v", v, now.Add(loadRetry))
	if f.queries != 2 {
		t.Errorf("after loadRetry: %d queries, want 2", f.queries)
	}
}
