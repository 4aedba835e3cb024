package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/ledger"
	"github.com/foundry-gateway/gateway/internal/store"
)

type simTotals struct {
	Requests         int64 `json:"requests"`
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	CachedTokens     int64 `json:"cached_tokens"`
	ReasoningTokens  int64 `json:"reasoning_tokens"`
}

func simUsage(t *testing.T, simURL string) map[string]simTotals {
	t.Helper()
	resp, err := http.Get(simURL + "/sim/usage")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]simTotals
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// mixed is the request mix: path and body by index.
func mixed(i int) (path, body string) {
	msg := fmt.Sprintf(`[{"role":"user","content":"ledger request %d %s"}]`, i, strings.Repeat("word ", i%13))
	switch i % 6 {
	case 0:
		return "/openai/v1/chat/completions", `{"model":"gpt-4o-mini","messages":` + msg + `}`
	case 1: // streamed, and the client asked for no usage
		return "/openai/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":` + msg + `}`
	case 2:
		return "/openai/v1/chat/completions", `{"model":"o4-mini","messages":` + msg + `}`
	case 3:
		return "/openai/v1/responses", fmt.Sprintf(`{"model":"gpt-4o-mini","input":"responses %d"}`, i)
	case 4:
		return "/openai/v1/responses", fmt.Sprintf(`{"model":"gpt-4o-mini","stream":true,"input":"responses stream %d"}`, i)
	default:
		return "/openai/v1/embeddings", fmt.Sprintf(`{"model":"text-embedding-3-small","input":"embed %d %s"}`, i, strings.Repeat("x ", i%17))
	}
}

// load sends n mixed requests with the key, 16 at a time.
func load(t *testing.T, url, key string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			path, body := mixed(i)
			resp := post(t, context.Background(), url+path, key, body, nil)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("request %d %s: got status %v, want 200", i, path, resp.StatusCode)
			}
		}()
	}
	wg.Wait()
}

// TestLedgerMatchesSimulator: ~1,000 mixed requests (chat plain and
// streamed without client usage, reasoning, Responses plain and streamed,
// embeddings) from three teams; the usage report (through GET /admin/usage)
// equals the simulator's own record exactly, per team and model. The teams
// take turns so the simulator's per-deployment record splits by team.
func TestLedgerMatchesSimulator(t *testing.T) {
	teams := []string{"research", "sales", "ops"}
	s := startLedgerStack(t, append(teams, "finance")...)
	want := map[string]simTotals{} // team|model
	before := simUsage(t, s.SimURL)
	for i, tm := range teams {
		load(t, s.URL, s.Keys[tm], 330+i)
		after := simUsage(t, s.SimURL)
		for dep, a := range after {
			b := before[dep]
			want[tm+"|"+dep] = simTotals{a.Requests - b.Requests, a.PromptTokens - b.PromptTokens,
				a.CompletionTokens - b.CompletionTokens, a.CachedTokens - b.CachedTokens, a.ReasoningTokens - b.ReasoningTokens}
		}
		before = after
	}
	time.Sleep(100 * time.Millisecond) // the last handlers record after the client has its answer
	s.Close(t)

	rep := adminReport(t, s.URL+"/gateway/admin/usage?by=team,model", s.Keys["finance"], http.StatusOK)
	got := map[string]simTotals{}
	for _, r := range rep.Rows {
		got[r.Team+"|"+r.Model] = simTotals{r.Requests - r.Errors, r.PromptTokens, r.CompletionTokens, r.CachedTokens, r.ReasoningTokens}
		if r.EstimatedRequests != 0 {
			t.Errorf("%s/%s: got %v estimated requests, want 0", r.Team, r.Model, r.EstimatedRequests)
		}
		if r.Cost <= 0 || r.Currency != "USD" {
			t.Errorf("%s/%s: got cost %v %q, want a positive USD cost", r.Team, r.Model, r.Cost, r.Currency)
		}
	}
	for k, w := range want {
		if w.Requests == 0 {
			continue
		}
		if got[k] != w {
			t.Errorf("%s: got %+v, want %+v (simulator)", k, got[k], w)
		}
	}
	if len(got) != 9 {
		t.Errorf("got %v team×model rows, want 9", len(got))
	}

	// The rollup timer through the Functions payload protocol, twice: the
	// same UsageDaily rows, with the same totals as the live report.
	for i := 0; i < 2; i++ {
		resp := post(t, context.Background(), s.URL+"/rollup", s.Keys["finance"], // standalone: an admin caller
			`{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"rollup"}}}`, nil)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "rollup: days") {
			t.Fatalf("POST /rollup: got %v %s, want 200 with the rollup log", resp.StatusCode, b)
		}
	}
	today := time.Now().UTC()
	rows, err := s.Tables.Daily.Query(context.Background(), store.Query{PartitionKey: today.Format("2006-01")})
	if err != nil {
		t.Fatal(err)
	}
	var daily, live int64
	for _, en := range rows {
		if en.Props["Date"] == ledger.Day(today) {
			daily += en.Props["TotalTokens"].(int64)
		}
	}
	for _, r := range rep.Rows {
		live += r.TotalTokens
	}
	if daily != live || daily == 0 {
		t.Errorf("UsageDaily total tokens: got %v, want %v (the report)", daily, live)
	}
}

func adminReport(t *testing.T, url, key string, wantStatus int) ledger.Report {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("GET %s: got %v %s, want %v", url, resp.StatusCode, b, wantStatus)
	}
	var rep ledger.Report
	if wantStatus == http.StatusOK {
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
	}
	return rep
}

// TestLedgerAdminScopes: admin sees every team; a team key sees only its own
// team and is refused another's; a usage:read (finance) key reads every
// team's usage and can do nothing else; CSV has the finance column names.
func TestLedgerAdminScopes(t *testing.T) {
	s := startLedgerStack(t, "research", "sales", "finance", "usage-reader")
	load(t, s.URL, s.Keys["research"], 12)
	load(t, s.URL, s.Keys["sales"], 6)
	time.Sleep(50 * time.Millisecond)
	if err := s.Writer.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		key, url  string
		status    int
		wantTeams string
	}{
		{"admin, all teams", "finance", "/admin/usage?by=team", 200, "research,sales"},
		{"usage:read, all teams", "usage-reader", "/gateway/admin/usage?by=team", 200, "research,sales"},
		{"usage:read names a team", "usage-reader", "/admin/usage?by=team&team=sales", 200, "sales"},
		{"team key, own team", "research", "/admin/usage?by=team", 200, "research"},
		{"team key names its team", "sales", "/admin/usage?by=team&team=sales", 200, "sales"},
		{"team key, other team", "research", "/admin/usage?team=sales", 403, ""},
		{"no key", "", "/admin/usage", 401, ""},
		{"bad dimension", "finance", "/admin/usage?by=colour", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := adminReport(t, s.URL+tt.url, s.Keys[tt.key], tt.status)
			if tt.status != 200 {
				return
			}
			var teams []string
			for _, r := range rep.Rows {
				teams = append(teams, r.Team)
			}
			if got := strings.Join(teams, ","); got != tt.wantTeams {
				t.Errorf("got teams %v, want %v", got, tt.wantTeams)
			}
		})
	}
	// usage:read may do nothing else.
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, "/openai/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`},
		{http.MethodPost, "/openai/v1/embeddings", `{"model":"text-embedding-3-small","input":"hi"}`},
		{http.MethodGet, "/openai/v1/models", ""},
	} {
		req, _ := http.NewRequest(c.method, s.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+s.Keys["usage-reader"])
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), `"code":"usage_read_only"`) {
			t.Errorf("usage:read %s %s: got %d %s, want 403 usage_read_only", c.method, c.path, resp.StatusCode, b)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/admin/usage?by=date,team&format=csv", nil)
	req.Header.Set("Authorization", "Bearer "+s.Keys["finance"])
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), "Date,Team,Requests,") || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Errorf("got %q %q, want a CSV with Date,Team,Requests,…", resp.Header.Get("Content-Type"), b)
	}
}
