package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/foundry-gateway/gateway/internal/ledger"
)

// cacheTop is the cache config of the cache e2e stacks: gpt-4o-mini
// semantic (embedded with text-embedding-3-small), o4-mini exact.
const cacheTop = `cache:
  models:
    gpt-4o-mini: { mode: semantic }
    o4-mini: { mode: exact }
  semantic: { embeddingModel: text-embedding-3-small }
`

func cacheStack(t testing.TB) *stack {
	return startStack(t, stackOptions{extraTop: cacheTop, extraKeys: [][]string{
		{"--team", "sales", "--app", "crm"}, {"--team", "semantic", "--app", "pairs"}}})
}

// cacheSimRequests is the number of requests the simulator answered for a
// deployment: its own record, not the gateway's.
func cacheSimRequests(t testing.TB, s *stack, deployment string) int64 {
	t.Helper()
	resp, err := http.Get(s.SimURL + "/sim/usage")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]struct {
		Requests int64 `json:"requests"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m[deployment].Requests
}

func keyClientFor(s *stack, key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(s.URL+"/openai/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// TestCacheExactE2E: an identical request is answered by the cache (the
// simulator sees no second call), as JSON or as an SSE stream the official
// SDK parses, for chat and the Responses API; another team never gets the
// hit; bypass and no-cache are obeyed; the ledger records hits and savings.
func TestCacheExactE2E(t *testing.T) {
	s := cacheStack(t)
	ctx := context.Background()
	c := keyClientFor(s, s.Key)
	sim := func() int64 { return cacheSimRequests(t, s, "gpt-4o-mini") }

	// 1. JSON miss, then JSON hit with no backend call.
	p := chatParams("gpt-4o-mini", "Explain the exact cache in one sentence.")
	var raw *http.Response
	first, err := c.Chat.Completions.New(ctx, p, option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	if got := raw.Header.Get("X-Gateway-Cache"); got != "miss" {
		t.Errorf("first call: x-gateway-cache %q, want miss", got)
	}
	before := sim()
	again, err := c.Chat.Completions.New(ctx, p, option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	if got := raw.Header.Get("X-Gateway-Cache"); got != "hit" || raw.Header.Get("X-Gateway-Cache-Kind") != "exact" {
		t.Errorf("second call: x-gateway-cache %q kind %q, want hit exact", got, raw.Header.Get("X-Gateway-Cache-Kind"))
	}
	if again.ID != first.ID || again.Choices[0].Message.Content != first.Choices[0].Message.Content {
		t.Errorf("hit differs: %q vs %q", again.Choices[0].Message.Content, first.Choices[0].Message.Content)
	}
	if n := sim(); n != before {
		t.Errorf("the simulator answered %d calls for a hit", n-before)
	}

	// 2. The same request streamed: a replay the SDK accumulates to the
	// same message, with the usage chunk it asked for.
	sp := p
	sp.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	st := c.Chat.Completions.NewStreaming(ctx, sp, option.WithResponseInto(&raw))
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for st.Next() {
		acc.AddChunk(st.Current())
		chunks++
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get("X-Gateway-Cache") != "hit" || raw.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("streamed hit headers: %v", raw.Header)
	}
	if acc.Choices[0].Message.Content != first.Choices[0].Message.Content || acc.Choices[0].FinishReason != first.Choices[0].FinishReason {
		t.Errorf("streamed replay: %q (%s), want %q", acc.Choices[0].Message.Content, acc.Choices[0].FinishReason, first.Choices[0].Message.Content)
	}
	if chunks < 3 || acc.Usage.TotalTokens != first.Usage.TotalTokens {
		t.Errorf("streamed replay: %d chunks, usage %+v, want %+v", chunks, acc.Usage, first.Usage)
	}
	if n := sim(); n != before {
		t.Errorf("the simulator answered %d calls for a streamed hit", n-before)
	}

	// 3. A streamed miss is stored too, and serves the JSON request.
	p2 := chatParams("gpt-4o-mini", "Stream first, then ask for JSON: what is a gateway?")
	st = c.Chat.Completions.NewStreaming(ctx, p2)
	acc = openai.ChatCompletionAccumulator{}
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	before = sim()
	j, err := c.Chat.Completions.New(ctx, p2, option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get("X-Gateway-Cache") != "hit" || j.Choices[0].Message.Content != acc.Choices[0].Message.Content || j.Usage.TotalTokens == 0 {
		t.Errorf("JSON after a stream: %s %q usage %+v, want hit %q", raw.Header.Get("X-Gateway-Cache"), j.Choices[0].Message.Content, j.Usage, acc.Choices[0].Message.Content)
	}
	if n := sim(); n != before {
		t.Errorf("the simulator answered %d calls for a hit", n-before)
	}

	// 4. Responses API (o4-mini, exact): JSON miss, streamed hit.
	rp := responses.ResponseNewParams{Model: "o4-mini", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Cache this response, please")}}
	r1, err := c.Responses.New(ctx, rp)
	if err != nil {
		t.Fatal(err)
	}
	rBefore := cacheSimRequests(t, s, "o4-mini")
	rs := c.Responses.NewStreaming(ctx, rp, option.WithResponseInto(&raw))
	var text strings.Builder
	var completed *responses.Response
	types := map[string]int{}
	seq := int64(-1)
	for rs.Next() {
		ev := rs.Current()
		types[ev.Type]++
		if ev.SequenceNumber != seq+1 {
			t.Errorf("event %s: sequence_number %d after %d", ev.Type, ev.SequenceNumber, seq)
		}
		seq = ev.SequenceNumber
		switch ev.Type {
		case "response.output_text.delta":
			text.WriteString(ev.Delta)
		case "response.completed":
			r := ev.Response
			completed = &r
		}
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get("X-Gateway-Cache") != "hit" || completed == nil || completed.ID != r1.ID ||
		text.String() != r1.OutputText() || completed.OutputText() != r1.OutputText() || completed.Usage.OutputTokens != r1.Usage.OutputTokens {
		t.Errorf("Responses replay: header %q, events %v, text %q, want %q", raw.Header.Get("X-Gateway-Cache"), types, text.String(), r1.OutputText())
	}
	for _, want := range []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added", "response.output_text.done", "response.output_item.done"} {
		if types[want] == 0 {
			t.Errorf("Responses replay: no %s event (%v)", want, types)
		}
	}
	if n := cacheSimRequests(t, s, "o4-mini"); n != rBefore {
		t.Errorf("the simulator answered %d Responses calls for a hit", n-rBefore)
	}

	// 5. Another team never shares the hit.
	before = sim()
	sales := keyClientFor(s, s.ExtraKeys[0])
	other, err := sales.Chat.Completions.New(ctx, p, option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get("X-Gateway-Cache") != "miss" || other.ID == first.ID || sim() != before+1 {
		t.Errorf("other team: header %q, id %s (first %s), sim calls %d", raw.Header.Get("X-Gateway-Cache"), other.ID, first.ID, sim()-before)
	}

	// 6. The client's bypass and no-cache.
	for hdr, want := range map[string]string{"x-gateway-cache: bypass": "bypass", "Cache-Control: no-store": "bypass", "Cache-Control: no-cache": "miss"} {
		k, v, _ := strings.Cut(hdr, ": ")
		before = sim()
		if _, err := c.Chat.Completions.New(ctx, p, option.WithHeader(k, v), option.WithResponseInto(&raw)); err != nil {
			t.Fatal(err)
		}
		if got := raw.Header.Get("X-Gateway-Cache"); got != want || sim() != before+1 {
			t.Errorf("%s: x-gateway-cache %q (want %s), sim calls %d (want 1)", hdr, got, want, sim()-before)
		}
	}

	// 7. An uncached model has no cache header.
	e, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}}, option.WithResponseInto(&raw))
	if err != nil || len(e.Data) == 0 || raw.Header.Get("X-Gateway-Cache") != "" {
		t.Errorf("uncached model: err %v header %q", err, raw.Header.Get("X-Gateway-Cache"))
	}

	// 8. The ledger: hits are requests with no tokens, and savings.
	var row ledger.Row
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		rep := adminReport(t, s.URL+"/admin/usage?by=team,model", s.Key, http.StatusOK)
		row = ledger.Row{}
		for _, r := range rep.Rows {
			if r.Team == "research" && r.Model == "gpt-4o-mini" {
				row = r
			}
		}
		if row.CacheHits >= 3 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Hits: JSON, streamed, JSON after a stream (and no more).
	wantSaved := 2*first.Usage.TotalTokens + j.Usage.TotalTokens
	if row.CacheHits != 3 || row.SavedTokens != wantSaved {
		t.Errorf("ledger research/gpt-4o-mini: %d hits, %d saved tokens; want 3 and %d", row.CacheHits, row.SavedTokens, wantSaved)
	}
}

// TestCacheSemanticPairs measures the semantic cache on 50 paraphrase and
// 50 unrelated pairs (testdata/cache_pairs.json) at the default score
// threshold: each pair's first prompt is stored, then its second is asked.
// A hit on an unrelated pair, or a paraphrase served another prompt's
// answer, is a false hit: there must be none. docs/caching.md reports the
// numbers.
func TestCacheSemanticPairs(t *testing.T) {
	b, err := os.ReadFile("testdata/cache_pairs.json")
	if err != nil {
		t.Fatal(err)
	}
	var pairs struct{ Paraphrases, Unrelated [][2]string }
	if err := json.Unmarshal(b, &pairs); err != nil {
		t.Fatal(err)
	}
	if len(pairs.Paraphrases) != 50 || len(pairs.Unrelated) != 50 {
		t.Fatalf("%d paraphrase and %d unrelated pairs, want 50 and 50", len(pairs.Paraphrases), len(pairs.Unrelated))
	}
	s := cacheStack(t)
	key := s.ExtraKeys[1] // team semantic: its own partition
	ctx := context.Background()
	ask := func(prompt string) (id, cache, score string) {
		body := fmt.Sprintf(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":%q}]}`, prompt)
		resp := post(t, ctx, s.URL+"/openai/v1/chat/completions", key, body, nil)
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%q: %d %s", prompt, resp.StatusCode, raw)
		}
		var r struct{ ID string }
		_ = json.Unmarshal(raw, &r)
		return r.ID, resp.Header.Get("X-Gateway-Cache"), resp.Header.Get("X-Gateway-Cache-Score")
	}
	embedBefore := cacheSimRequests(t, s, "text-embedding-3-small")
	ids := map[string]string{} // first prompt → its answer's id
	all := append(append([][2]string{}, pairs.Paraphrases...), pairs.Unrelated...)
	for _, p := range all {
		id, c, _ := ask(p[0])
		if c != "miss" {
			t.Fatalf("first prompt %q: %s, want miss", p[0], c)
		}
		ids[p[0]] = id
	}
	byID := map[string]string{}
	for k, v := range ids {
		byID[v] = k
	}
	hits, wrong, falseHits := 0, 0, 0
	for _, p := range pairs.Paraphrases {
		id, c, score := ask(p[1])
		switch {
		case c == "hit" && id == ids[p[0]]:
			hits++
		case c == "hit":
			wrong++
			t.Errorf("paraphrase %q served the answer of %q (score %s)", p[1], byID[id], score)
		default:
			t.Logf("paraphrase missed: %q / %q", p[0], p[1])
		}
	}
	for _, p := range pairs.Unrelated {
		id, c, score := ask(p[1])
		if c == "hit" {
			falseHits++
			t.Errorf("unrelated %q served the answer of %q (score %s)", p[1], byID[id], score)
		}
	}
	t.Logf("semantic cache at the default threshold: paraphrase hits %d/50 (%.0f%%), wrong-entry hits %d, unrelated false hits %d/50",
		hits, float64(hits)*2, wrong, falseHits)
	if falseHits != 0 || wrong != 0 {
		t.Errorf("false hits: %d unrelated, %d wrong entry; want 0", falseHits, wrong)
	}
	// A floor, so that a broken semantic path fails (the measured rate is
	// in docs/caching.md).
	if hits < 40 {
		t.Errorf("paraphrase hits %d/50, want at least 40", hits)
	}
	// Every lookup embedded its prompt through the gateway's router.
	if n := cacheSimRequests(t, s, "text-embedding-3-small") - embedBefore; n != 200 {
		t.Errorf("embedding calls at the simulator: %d, want 200", n)
	}
}

// TestCacheHitAudited: a team that is audited has its cache hits in the
// audit trail too, marked with the cache kind and holding the bytes the
// client was served; the miss before it is an ordinary record.
func TestCacheHitAudited(t *testing.T) {
	s := startStack(t, stackOptions{extraTop: cacheTop + "audit:\n  teams: [research]\n  flushInterval: 200ms\n"})
	ctx := context.Background()
	body := `{"model":"o4-mini","messages":[{"role":"user","content":"Is a cached answer audited?"}]}`
	var ids [2]string
	var served [2][]byte
	for i := range ids {
		resp := post(t, ctx, s.URL+"/openai/v1/chat/completions", s.Key, body, nil)
		served[i], _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		ids[i] = resp.Header.Get("X-Request-Id")
		if resp.StatusCode != http.StatusOK || ids[i] == "" {
			t.Fatalf("call %d: %d %s (request id %q)", i, resp.StatusCode, served[i], ids[i])
		}
		if want := []string{"miss", "hit"}[i]; resp.Header.Get("X-Gateway-Cache") != want {
			t.Fatalf("call %d: x-gateway-cache %q, want %s", i, resp.Header.Get("X-Gateway-Cache"), want)
		}
	}
	for i, id := range ids {
		var rec struct {
			Status   int    `json:"status"`
			Cache    string `json:"cache"`
			Request  string `json:"request"`
			Response string `json:"response"`
		}
		var status int
		for range 100 { // records are appended within flushInterval
			req, _ := http.NewRequest(http.MethodGet, s.URL+"/gateway/admin/audit/"+id, nil)
			req.Header.Set("api-key", s.Key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if status = resp.StatusCode; status == http.StatusOK {
				if err := json.Unmarshal(b, &rec); err != nil {
					t.Fatalf("audit record %s: %v: %s", id, err, b)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if status != http.StatusOK {
			t.Fatalf("audit record of call %d (%s): status %d", i, id, status)
		}
		if want := []string{"", "exact"}[i]; rec.Cache != want || rec.Status != http.StatusOK ||
			rec.Request != body || rec.Response != string(served[i]) {
			t.Errorf("audit record of call %d: cache %q status %d request %q response %q; want cache %q and the bytes served %q",
				i, rec.Cache, rec.Status, rec.Request, rec.Response, want, served[i])
		}
	}
}
