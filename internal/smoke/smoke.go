package smoke

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Options say what to check.
type Options struct {
	// URL is the gateway's base URL (the Bicep output gatewayUrl), without
	// /openai/v1.
	URL string
	// Key is a gateway API key. The usage report needs the admin scope to
	// show every team; any key reads its own team's.
	Key string
	// Model is the alias to call. Default gpt-4o-mini.
	Model string
	// JobTimeout bounds the wait for the async job; the drain timer runs it
	// when the pool has room. Default 3m.
	JobTimeout time.Duration
	// PollInterval between job polls. Default 2s.
	PollInterval time.Duration
	// Client sends the requests. Default: a client without an overall
	// timeout (each check has its own deadline).
	Client *http.Client
}

// Result is one check's outcome.
type Result struct {
	Name   string
	OK     bool
	Detail string
	Took   time.Duration
}

// Run runs every check in order and returns their results; it stops early
// only when ctx ends. A check never depends on an earlier one passing.
func Run(ctx context.Context, o Options) []Result {
	if o.Model == "" {
		o.Model = "gpt-4o-mini"
	}
	if o.JobTimeout <= 0 {
		o.JobTimeout = 3 * time.Minute
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	o.URL = strings.TrimSuffix(o.URL, "/")
	r := runner{o: o}
	checks := []struct {
		name    string
		timeout time.Duration
		fn      func(ctx context.Context) (string, error)
	}{
		{"models", 30 * time.Second, r.models},
		{"chat", 2 * time.Minute, r.chat},
		{"stream", 2 * time.Minute, r.stream},
		{"async job", o.JobTimeout + 30*time.Second, r.job},
		{"usage report", time.Minute, r.usage},
	}
	var out []Result
	for _, c := range checks {
		if ctx.Err() != nil {
			break
		}
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		start := time.Now()
		detail, err := c.fn(cctx)
		cancel()
		res := Result{Name: c.name, OK: err == nil, Detail: detail, Took: time.Since(start)}
		if err != nil {
			res.Detail = err.Error()
		}
		out = append(out, res)
	}
	return out
}

type runner struct{ o Options }

// do sends one request and returns the status and the body (at most 1 MiB).
func (r runner) do(ctx context.Context, method, path string, body any, hdr map[string]string) (int, http.Header, []byte, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.o.URL+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.o.Key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := r.o.Client.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, resp.Header, b, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return resp.StatusCode, resp.Header, b, nil
}

// statusError describes an unexpected status with the gateway's OpenAI
// error, so the operator sees its code and message.
func statusError(what string, status int, body []byte) error {
	var e struct {
		Error struct {
			Code    any    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return fmt.Errorf("%s: status %d, %v: %s", what, status, e.Error.Code, e.Error.Message)
	}
	return fmt.Errorf("%s: status %d: %.200s", what, status, body)
}

func (r runner) chatBody(stream bool) map[string]any {
	b := map[string]any{"model": r.o.Model, "max_tokens": 16,
		"messages": []map[string]string{{"role": "user", "content": "Reply with one short sentence: is the gateway up?"}}}
	if stream {
		b["stream"] = true
	}
	return b
}

func (r runner) models(ctx context.Context) (string, error) {
	status, _, body, err := r.do(ctx, http.MethodGet, "/openai/v1/models", nil, nil)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", statusError("GET /openai/v1/models", status, body)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return "", fmt.Errorf("GET /openai/v1/models: not a model list: %w", err)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	for _, id := range ids {
		if id == r.o.Model {
			return "key accepted; models: " + strings.Join(ids, ", "), nil
		}
	}
	return "", fmt.Errorf("model %s is not among the models this key may call (%s); pass --model", r.o.Model, strings.Join(ids, ", "))
}

func (r runner) chat(ctx context.Context) (string, error) {
	status, h, body, err := r.do(ctx, http.MethodPost, "/openai/v1/chat/completions", r.chatBody(false), nil)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", statusError("chat completion", status, body)
	}
	var c struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage *struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &c); err != nil || len(c.Choices) == 0 {
		return "", fmt.Errorf("chat completion: status 200 but no choices in %.200s", body)
	}
	tokens := "no usage reported"
	if c.Usage != nil {
		tokens = fmt.Sprintf("%d tokens", c.Usage.TotalTokens)
	}
	return fmt.Sprintf("answer %q, %s, x-request-id %s", trim(c.Choices[0].Message.Content, 60), tokens, h.Get("X-Request-Id")), nil
}

func (r runner) stream(ctx context.Context) (string, error) {
	b, _ := json.Marshal(r.chatBody(true))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.o.URL+"/openai/v1/chat/completions", bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+r.o.Key)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := r.o.Client.Do(req)
	if err != nil {
		return "", fmt.Errorf("streamed chat: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return "", statusError("streamed chat", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return "", fmt.Errorf("streamed chat: Content-Type %q, want text/event-stream", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var first time.Duration
	chunks, done := 0, false
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data:")
		if !ok {
			continue
		}
		data = strings.TrimSpace(data)
		if data == "[DONE]" {
			done = true
			break
		}
		if !json.Valid([]byte(data)) {
			return "", fmt.Errorf("streamed chat: event %d is not JSON: %.200s", chunks+1, data)
		}
		if chunks == 0 {
			first = time.Since(start)
		}
		chunks++
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("streamed chat: cut after %d events: %w", chunks, err)
	}
	if chunks == 0 || !done {
		return "", fmt.Errorf("streamed chat: %d events, [DONE] seen: %v; want events and a [DONE]", chunks, done)
	}
	return fmt.Sprintf("%d events, first after %v, total %v", chunks, first.Round(time.Millisecond), time.Since(start).Round(time.Millisecond)), nil
}

func (r runner) job(ctx context.Context) (string, error) {
	status, h, body, err := r.do(ctx, http.MethodPost, "/openai/v1/chat/completions", r.chatBody(false), map[string]string{"Prefer": "respond-async"})
	if err != nil {
		return "", err
	}
	if status != http.StatusAccepted {
		return "", statusError("async submit (Prefer: respond-async)", status, body)
	}
	var j struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	if err := json.Unmarshal(body, &j); err != nil || j.ID == "" {
		return "", fmt.Errorf("async submit: 202 without a job id: %.200s", body)
	}
	loc := h.Get("Operation-Location")
	if loc == "" {
		loc = "/jobs/" + j.ID
	}
	start := time.Now()
	deadline := start.Add(r.o.JobTimeout)
	for {
		switch j.Status {
		case "succeeded":
			return fmt.Sprintf("job %s succeeded after %v", j.ID, time.Since(start).Round(time.Second)), nil
		case "failed", "cancelled":
			return "", fmt.Errorf("job %s %s: %s", j.ID, j.Status, j.Error)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("job %s still %s after %v: is the drain timer running (App Insights: the drain function), and the pool below jobs.drainTarget?", j.ID, j.Status, r.o.JobTimeout)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("job %s: %w", j.ID, ctx.Err())
		case <-time.After(r.o.PollInterval):
		}
		status, _, body, err := r.do(ctx, http.MethodGet, loc, nil, nil)
		if err != nil {
			return "", err
		}
		if status != http.StatusOK {
			return "", statusError("GET "+loc, status, body)
		}
		if err := json.Unmarshal(body, &j); err != nil {
			return "", fmt.Errorf("GET %s: %w", loc, err)
		}
	}
}

func (r runner) usage(ctx context.Context) (string, error) {
	path := "/gateway/admin/usage?format=json&by=team,model"
	status, _, body, err := r.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", statusError("GET "+path, status, body)
	}
	var rep struct {
		From, To string
		Rows     []json.RawMessage `json:"rows"`
	}
	if err := json.Unmarshal(body, &rep); err != nil || rep.Rows == nil {
		return "", errors.New("usage report: status 200 but not a usage report")
	}
	return fmt.Sprintf("report for %s..%s with %d row(s) (usage rows appear after the rollup timer runs)", rep.From, rep.To, len(rep.Rows)), nil
}

func trim(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Write prints the results, one line each, and a summary; it returns the
// number of failed checks.
func Write(w io.Writer, url string, results []Result) int {
	failed := 0
	fmt.Fprintf(w, "smoke test of %s\n", url)
	for _, r := range results {
		mark := "ok  "
		if !r.OK {
			mark = "FAIL"
			failed++
		}
		fmt.Fprintf(w, "  %s %-13s %6v  %s\n", mark, r.Name, r.Took.Round(time.Millisecond), r.Detail)
	}
	if failed == 0 {
		fmt.Fprintf(w, "all %d checks passed\n", len(results))
	} else {
		fmt.Fprintf(w, "%d of %d checks failed\n", failed, len(results))
	}
	return failed
}
