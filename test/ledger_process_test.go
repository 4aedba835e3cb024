package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/ledger"
)

// asyncJobs submits n low-priority chats (Prefer: respond-async) and waits
// until every job has succeeded.
func asyncJobs(t *testing.T, url, key string, n int) {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		resp := post(t, context.Background(), url+"/openai/v1/chat/completions", key,
			fmt.Sprintf(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"async job %d"}]}`, i),
			map[string]string{"Prefer": "respond-async"})
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("submit: got %v %s, want 202", resp.StatusCode, b)
		}
		ids = append(ids, strings.TrimPrefix(resp.Header.Get("Operation-Location"), "/jobs/"))
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range ids {
		for {
			req, _ := http.NewRequest(http.MethodGet, url+"/jobs/"+id, nil)
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			var j struct {
				Status string `json:"status"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&j)
			resp.Body.Close()
			if j.Status == "succeeded" {
				break
			}
			if j.Status == "failed" || j.Status == "cancelled" || time.Now().After(deadline) {
				t.Fatalf("job %s: status %q, want succeeded", id, j.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// longPrompts sends n chats of about 1,300 prompt tokens, which the
// simulator answers with cached tokens; every other one is streamed
// without client usage.
func longPrompts(t *testing.T, url, key string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		content := fmt.Sprintf("long %d %s", i, strings.Repeat("cache me ", 600))
		body := fmt.Sprintf(`{"model":"gpt-4o-mini","stream":%v,"messages":[{"role":"user","content":%q}]}`, i%2 == 1, content)
		resp := post(t, context.Background(), url+"/openai/v1/chat/completions", key, body, nil)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("long prompt %d: got %v, want 200", i, resp.StatusCode)
		}
	}
}

// reportTotals sums report rows.
func reportTotals(rows []ledger.Row) simTotals {
	var s simTotals
	for _, r := range rows {
		s.Requests += r.Requests - r.Errors
		s.PromptTokens += r.PromptTokens
		s.CompletionTokens += r.CompletionTokens
		s.CachedTokens += r.CachedTokens
		s.ReasoningTokens += r.ReasoningTokens
	}
	return s
}

func addTotals(a, b simTotals) simTotals {
	return simTotals{a.Requests + b.Requests, a.PromptTokens + b.PromptTokens, a.CompletionTokens + b.CompletionTokens,
		a.CachedTokens + b.CachedTokens, a.ReasoningTokens + b.ReasoningTokens}
}

func subTotals(a, b simTotals) simTotals {
	return simTotals{a.Requests - b.Requests, a.PromptTokens - b.PromptTokens, a.CompletionTokens - b.CompletionTokens,
		a.CachedTokens - b.CachedTokens, a.ReasoningTokens - b.ReasoningTokens}
}

// TestLedgerMatchesSimulatorProcesses is issue 7's main acceptance through
// real processes (`handler sim` + `handler serve`, the ledger as serve.go
// wires it): ~1,000 mixed requests (chat plain and streamed without client
// usage, reasoning, Responses plain and streamed, embeddings) plus async
// jobs drained by the in-process timer, from three teams taking turns; the
// usage report read through GET /gateway/admin/usage equals the
// simulator's own record exactly, per team and model.
func TestLedgerMatchesSimulatorProcesses(t *testing.T) {
	s := startStack(t, stackOptions{
		extraTop:  "ledger: { flushInterval: 200ms }\ntimers: { drain: 200ms }",
		extraKeys: [][]string{{"--team", "sales", "--app", "crm"}, {"--team", "ops", "--app", "bots"}},
	})
	teams := []string{"research", "sales", "ops"}
	keys := map[string]string{"research": s.Key, "sales": s.ExtraKeys[0], "ops": s.ExtraKeys[1]}
	want := map[string]simTotals{} // team|model
	var wantAll simTotals
	before := simUsage(t, s.SimURL)
	for i, tm := range teams {
		load(t, s.URL, keys[tm], 330+i)
		asyncJobs(t, s.URL, keys[tm], 4)
		longPrompts(t, s.URL, keys[tm], 4)
		after := simUsage(t, s.SimURL)
		for dep, a := range after {
			d := subTotals(a, before[dep])
			if d.Requests > 0 {
				want[tm+"|"+dep] = d
				wantAll = addTotals(wantAll, d)
			}
		}
		before = after
	}
	if wantAll.Requests < 1000 || wantAll.CachedTokens == 0 || wantAll.ReasoningTokens == 0 {
		t.Fatalf("the simulator saw %+v, want at least 1000 requests with cached and reasoning tokens", wantAll)
	}

	// The ledger flushes every 200ms; poll until the report has them all.
	today := time.Now().UTC().Format("2006-01-02")
	url := fmt.Sprintf("%s/gateway/admin/usage?by=team,model&format=json&from=%s&to=%s", s.URL, today, today)
	var rep ledger.Report
	deadline := time.Now().Add(10 * time.Second)
	for {
		rep = adminReport(t, url, s.Key, http.StatusOK)
		if reportTotals(rep.Rows).Requests >= wantAll.Requests || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := map[string]simTotals{}
	for _, r := range rep.Rows {
		got[r.Team+"|"+r.Model] = simTotals{r.Requests - r.Errors, r.PromptTokens, r.CompletionTokens, r.CachedTokens, r.ReasoningTokens}
		if r.EstimatedRequests != 0 {
			t.Errorf("%s/%s: got %v estimated requests, want 0 (every stream reported usage upstream)", r.Team, r.Model, r.EstimatedRequests)
		}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %+v, want %+v (simulator)", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %v team×model rows, want %v: %v", len(got), len(want), got)
	}
	t.Logf("simulator and ledger agree: %+v over %d team×model rows", reportTotals(rep.Rows), len(got))

	// The jobs are in the ledger as class batch (3 teams × 4 jobs).
	byClass := adminReport(t, fmt.Sprintf("%s/gateway/admin/usage?by=class&format=json&from=%s&to=%s", s.URL, today, today), s.Key, http.StatusOK)
	for _, r := range byClass.Rows {
		if r.Class == "batch" && r.Requests != 12 {
			t.Errorf("class batch: got %v requests, want 12 (the async jobs)", r.Requests)
		}
	}
}

// clientUsage is what a client saw of one successful call.
type clientUsage struct {
	requests, prompt, completion int64
}

// callWithUsage sends request i of a mix whose answers all carry usage
// (plain chat, reasoning, streamed chat with include_usage, embeddings,
// Responses) and returns the usage the client received; ok is false if the
// call did not complete with 200.
func callWithUsage(ctx context.Context, url, key string, i int) (u clientUsage, ok bool) {
	var path, body string
	msg := fmt.Sprintf(`[{"role":"user","content":"sigterm %d %s"}]`, i, strings.Repeat("w ", i%11))
	stream := false
	switch i % 5 {
	case 0:
		path, body = "/openai/v1/chat/completions", `{"model":"gpt-4o-mini","messages":`+msg+`}`
	case 1:
		path, body = "/openai/v1/chat/completions", `{"model":"o4-mini","messages":`+msg+`}`
	case 2:
		path, body, stream = "/openai/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":`+msg+`}`, true
	case 3:
		path, body = "/openai/v1/embeddings", fmt.Sprintf(`{"model":"text-embedding-3-small","input":"embed %d"}`, i)
	default:
		path, body = "/openai/v1/responses", fmt.Sprintf(`{"model":"gpt-4o-mini","input":"responses %d"}`, i)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+path, strings.NewReader(body))
	if err != nil {
		return u, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return u, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return u, false
	}
	type usage struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
		InputTokens      int64 `json:"input_tokens"`
		OutputTokens     int64 `json:"output_tokens"`
	}
	var last *usage
	if stream {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		done := false
		for sc.Scan() {
			line, found := strings.CutPrefix(sc.Text(), "data: ")
			if !found {
				continue
			}
			if line == "[DONE]" {
				done = true
				continue
			}
			var ev struct{ Usage *usage }
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Usage != nil {
				last = ev.Usage
			}
		}
		if sc.Err() != nil || !done {
			return u, false
		}
	} else {
		var r struct{ Usage *usage }
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return u, false
		}
		last = r.Usage
	}
	if last == nil {
		return u, false
	}
	return clientUsage{1, last.PromptTokens + last.InputTokens, last.CompletionTokens + last.OutputTokens}, true
}

// TestLedgerSurvivesSIGTERM: load from several goroutines, SIGTERM the
// gateway mid-load; after it exits, `handler usage report` (on the same
// embedded store) has an event for every call that completed with 200 at
// the client, with the tokens the client was told, and nothing more than
// the simulator served.
func TestLedgerSurvivesSIGTERM(t *testing.T) {
	// A long flush interval: without the flush on shutdown, the events of
	// the last seconds would be lost.
	s := startStack(t, stackOptions{extraTop: "ledger: { flushInterval: 5s }"})
	ld := startLoad(s.URL, s.Key, 8, 0, 10*time.Millisecond)
	time.Sleep(1500 * time.Millisecond)
	if err := s.GW.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.GW.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway did not exit within 30s of SIGTERM")
	}
	seen, failed := ld.stop()
	if strings.Contains(s.GW.Output(), "flush on shutdown") {
		t.Errorf("the gateway reported a failed flush on shutdown:\n%s", tail(s.GW.Output(), 2000))
	}
	if seen.requests < 50 {
		t.Fatalf("only %v calls completed before SIGTERM; the load did not run", seen.requests)
	}

	out, err := cliCmd(filepath.Join(s.Dir, "gateway.yaml"), nil, "usage", "report", "--format", "json", "--by", "class").Output()
	if err != nil {
		t.Fatalf("usage report: %v\n%s", err, out)
	}
	var rep ledger.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got := reportTotals(rep.Rows)
	var sim simTotals
	for _, v := range simUsage(t, s.SimURL) {
		sim = addTotals(sim, v)
	}
	t.Logf("SIGTERM mid-load: clients saw %d calls complete (%d prompt, %d completion tokens), %d refused or cut; ledger %+v; simulator %+v",
		seen.requests, seen.prompt, seen.completion, failed, got, sim)
	if got.Requests != seen.requests || got.PromptTokens != seen.prompt || got.CompletionTokens != seen.completion {
		t.Errorf("ledger after SIGTERM: got %v requests, %v prompt, %v completion; want %v, %v, %v (what the clients received)",
			got.Requests, got.PromptTokens, got.CompletionTokens, seen.requests, seen.prompt, seen.completion)
	}
	if got != sim {
		t.Errorf("ledger %+v, want the simulator's record %+v", got, sim)
	}
}

// TestLedgerAzuriteOutageProcesses: a gateway process on Azurite keeps
// serving while Azurite is stopped mid-load and restarted; afterwards the
// usage report equals what the clients received and the simulator's
// record exactly: no event lost (held in memory, then spooled) and none
// counted twice (replays are keyed by request id).
func TestLedgerAzuriteOutageProcesses(t *testing.T) {
	az := azurite.Start(t)
	// keyCacheTTL long enough that authentication does not need the store
	// during the outage; spoolAfter short so the spool file is used.
	s, _ := startStoreStack(t, `store: { kind: azure-tables, connection: GatewayTables }`,
		"auth: { keyCacheTTL: 5m }", []string{"GatewayTables=" + az.ConnectionString()},
		"ledger: { flushInterval: 200ms, spoolAfter: 500ms }", nil)
	ld := startLoad(s.URL, s.Key, 6, 5*time.Millisecond, 0)
	time.Sleep(time.Second)
	az.Stop()
	atStop := ld.completed()
	time.Sleep(2 * time.Second)
	duringOutage := ld.completed() - atStop
	az.Restart()
	time.Sleep(time.Second)
	seen, failed := ld.stop()
	if duringOutage == 0 {
		t.Fatalf("no call completed while Azurite was down; the gateway did not keep serving")
	}

	var sim simTotals
	for _, v := range simUsage(t, s.SimURL) {
		sim = addTotals(sim, v)
	}
	today := time.Now().UTC().Format("2006-01-02")
	url := fmt.Sprintf("%s/gateway/admin/usage?by=class&format=json&from=%s&to=%s", s.URL, today, today)
	var got simTotals
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+s.Key)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err == nil {
			var rep ledger.Report
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&rep) == nil {
				got = reportTotals(rep.Rows)
			}
			resp.Body.Close()
		}
		if got == sim || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	spooled, replayed := s.GW.LogLines("usage events spooled"), s.GW.LogLines("usage spool replayed")
	t.Logf("Azurite outage: %d calls completed at the clients (%d during the 2s outage), %d failed; ledger %+v; simulator %+v; spooled %d times, replayed %d times",
		seen.requests, duringOutage, failed, got, sim, len(spooled), len(replayed))
	if len(spooled) == 0 || len(replayed) == 0 {
		t.Errorf("spooled %d times, replayed %d times: want the outage to go through the spool file", len(spooled), len(replayed))
	}
	if got.Requests != seen.requests || got.PromptTokens != seen.prompt || got.CompletionTokens != seen.completion {
		t.Errorf("ledger: got %v requests, %v prompt, %v completion; want %v, %v, %v (what the clients received)",
			got.Requests, got.PromptTokens, got.CompletionTokens, seen.requests, seen.prompt, seen.completion)
	}
	if got != sim {
		t.Errorf("ledger %+v, want the simulator's record %+v", got, sim)
	}
}

// loadRun keeps n goroutines calling callWithUsage until stop, tallying what
// the clients were told.
type loadRun struct {
	mu     sync.Mutex
	seen   clientUsage
	failed int
	done   chan struct{}
	wg     sync.WaitGroup
}

// startLoad starts the goroutines; each pauses `pause` after every call and
// `pauseOnFail` after a failed one.
func startLoad(url, key string, n int, pause, pauseOnFail time.Duration) *loadRun {
	l := &loadRun{done: make(chan struct{})}
	for g := 0; g < n; g++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := g; ; i += n {
				select {
				case <-l.done:
					return
				default:
				}
				u, ok := callWithUsage(context.Background(), url, key, i)
				l.mu.Lock()
				if ok {
					l.seen.requests++
					l.seen.prompt += u.prompt
					l.seen.completion += u.completion
				} else {
					l.failed++
				}
				l.mu.Unlock()
				if !ok && pauseOnFail > 0 {
					time.Sleep(pauseOnFail)
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}()
	}
	return l
}

// completed is how many calls have completed with 200 so far.
func (l *loadRun) completed() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen.requests
}

// stop ends the load and returns the tally.
func (l *loadRun) stop() (clientUsage, int) {
	close(l.done)
	l.wg.Wait()
	return l.seen, l.failed
}
