package test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/audit"
	"github.com/foundry-gateway/gateway/internal/blob"
)

// auditTop audits every request of team research, redacting PII and
// account numbers (issue #19).
const auditTop = `audit:
  teams: [research]
  redactPII: true
  redact: ["ACCT-[0-9]{6}"]
  flushInterval: 300ms
`

// auditCall is one call of TestAuditTrail as the client saw it.
type auditCall struct {
	id, prompt string
	body       []byte // the response body, byte for byte
	stream     bool
	pii        bool
}

// TestAuditTrail: 1,000 and more mixed calls (chat, streamed chat, Azure
// deployment path, completions, Responses, embeddings) with the audit on,
// and a SIGTERM while they run. Every call the gateway answered has
// exactly one record; its response (a stream assembled from its events) is
// byte for byte what the client received; redaction rules ran on the
// request; the admin API, an audit:read key and the CLI read records; no
// prompt or completion is in the gateway's logs or telemetry.
func TestAuditTrail(t *testing.T) {
	in := newAIIngest(t, false)
	s := startStack(t, stackOptions{extraTop: auditTop, env: []string{in.env()},
		extraKeys: [][]string{{"--team", "compliance", "--app", "audit", "--audit-read"}, {"--team", "other", "--app", "x"}}})
	ctx := context.Background()
	kinds := []struct {
		path, body string
		stream     bool
	}{
		{"/openai/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":%q}]}`, false},
		{"/openai/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":%q}]}`, true},
		{"/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21", `{"messages":[{"role":"user","content":%q}],"stream":true,"stream_options":{"include_usage":true}}`, true},
		{"/openai/v1/completions", `{"model":"gpt-4o-mini","prompt":%q,"max_tokens":20}`, false},
		{"/openai/v1/responses", `{"model":"gpt-4o-mini","input":%q}`, false},
		{"/openai/v1/embeddings", `{"model":"text-embedding-3-small","input":%q}`, false},
	}
	const n, term = 1040, 1000 // SIGTERM after 1,000 calls; the rest race it
	var (
		mu    sync.Mutex
		calls []auditCall
		wg    sync.WaitGroup
		next  = make(chan int)
		hc    = &http.Client{Timeout: 20 * time.Second}
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				k := kinds[i%len(kinds)]
				c := auditCall{prompt: fmt.Sprintf("audit-prompt-%04d-q%d", i, i*7919), stream: k.stream, pii: i%4 == 0}
				text := c.prompt
				if c.pii {
					text += fmt.Sprintf(" mail me at user%d@example.com about ACCT-%06d", i, i)
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+k.path, strings.NewReader(fmt.Sprintf(k.body, text)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("api-key", s.Key)
				resp, err := hc.Do(req)
				if err != nil {
					continue // the gateway is shutting down
				}
				c.body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				c.id = resp.Header.Get("X-Request-Id")
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Errorf("call %d: %d %v %s", i, resp.StatusCode, err, c.body)
					continue
				}
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		if i == term {
			// Read records while the gateway runs: the admin API (admin
			// and audit:read keys; others are refused).
			mu.Lock()
			first := calls[0]
			mu.Unlock()
			checkAdminAudit(t, s, first)
			_ = s.GW.cmd.Process.Signal(syscall.SIGTERM) // the rest race the shutdown
		}
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case <-s.GW.done:
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}
	if len(calls) < term {
		t.Fatalf("only %d calls answered", len(calls))
	}

	d, err := blob.OpenDir(filepath.Join(s.Dir, "data", "blobs"), "audit")
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string][]audit.Record{}
	bad, err := audit.Scan(ctx, d, "", func(_ string, r audit.Record) { recs[r.RequestID] = append(recs[r.RequestID], r) })
	if err != nil || bad != 0 {
		t.Fatalf("Scan: %v, %d lines that do not decode", err, bad)
	}
	streams := 0
	for _, c := range calls {
		rs := recs[c.id]
		if len(rs) != 1 {
			t.Errorf("request %s: %d records, want 1", c.id, len(rs))
			continue
		}
		r := rs[0]
		if r.Team != "research" || r.KeyID == "" || r.Status != 200 || r.Model == "" || r.Deployment == "" || r.Time.IsZero() {
			t.Errorf("request %s: record %+v", c.id, r)
		}
		if _, resp := r.Bodies(); !bytes.Equal(resp, c.body) {
			t.Errorf("request %s: recorded response (%d bytes) differs from the %d bytes the client got", c.id, len(resp), len(c.body))
		}
		if c.stream {
			streams++
			if !bytes.HasPrefix(c.body, []byte("data: ")) || !r.Stream {
				t.Errorf("request %s: not a stream: %q", c.id, c.body[:min(40, len(c.body))])
			}
		}
		if !strings.Contains(r.Request, c.prompt) {
			t.Errorf("request %s: the request body was not recorded: %q", c.id, r.Request)
		}
		if c.pii && (strings.Contains(r.Request, "@example.com") || strings.Contains(r.Request, "ACCT-") || r.Redacted < 2) {
			t.Errorf("request %s: not redacted: %q (%d)", c.id, r.Request, r.Redacted)
		}
	}
	if len(recs) != len(calls) {
		t.Errorf("%d records for %d answered calls", len(recs), len(calls))
	}
	if streams < 200 {
		t.Errorf("only %d streams", streams)
	}
	t.Logf("%d calls answered (of %d) across the SIGTERM, %d streams; one record each", len(calls), n, streams)

	// The CLI reads a record from the blob store.
	cli := exec.Command(handlerBin, "audit", "get", calls[len(calls)-1].id, "--config", s.CfgPath)
	cli.Dir = s.Dir
	out, err := cli.CombinedOutput()
	if err != nil || !strings.Contains(string(out), calls[len(calls)-1].prompt) {
		t.Errorf("handler audit get: %v\n%s", err, out)
	}

	// Nothing of the content in the gateway's logs or telemetry.
	lc := newLeakCheck()
	lc.sources["gateway"] = s.GW.Output
	lc.sources["telemetry"] = in.payloads
	lc.forbid(t, "prompt", "audit-prompt-0")
	for i, c := range calls[:50] {
		if txt := longestText(completionTexts(c.body)); len(txt) >= 12 {
			lc.forbid(t, fmt.Sprintf("completion %d", i), txt)
		}
	}
	lc.assert(t)
	if len(in.received("RequestData")) == 0 {
		t.Error("no telemetry arrived: the leak check saw nothing")
	}
}

// checkAdminAudit reads one record through the admin API with each key.
func checkAdminAudit(t *testing.T, s *stack, c auditCall) {
	t.Helper()
	id := c.id
	get := func(key string) (int, string) {
		var status int
		var body []byte
		for range 50 { // records are appended within flushInterval
			req, _ := http.NewRequest(http.MethodGet, s.URL+"/gateway/admin/audit/"+id, nil)
			req.Header.Set("api-key", key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if status = resp.StatusCode; status != http.StatusNotFound {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		return status, string(body)
	}
	for _, k := range []struct {
		name, key string
		want      int
	}{{"admin", s.Key, 200}, {"audit:read", s.ExtraKeys[0], 200}, {"team key", s.ExtraKeys[1], 403}} {
		status, body := get(k.key)
		if status != k.want || (k.want == 200 && !strings.Contains(body, c.prompt)) {
			t.Errorf("GET /gateway/admin/audit/%s with the %s: %d %s, want %d", id, k.name, status, body[:min(200, len(body))], k.want)
		}
	}
	// An audit:read key does nothing else.
	resp := post(t, context.Background(), s.URL+"/openai/v1/chat/completions", s.ExtraKeys[0], `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("chat with an audit:read key: %d, want 403", resp.StatusCode)
	}
}
