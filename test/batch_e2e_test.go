package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
)

// batchSim: an idle simulator. gpt-4o-mini answers at once; slow takes
// 150 ms a request (for cancelling mid-way). Both have a token budget so
// their answers carry the x-ratelimit-* headers the drain reads.
const batchSim = `deployments:
  - { name: gpt-4o-mini, tpm: 100000000, latency: { ttft: 2ms, tokensPerSecond: 0 } }
  - { name: slow, model: gpt-4o-mini, tpm: 100000000, latency: { ttft: 150ms, tokensPerSecond: 0 } }
  - { name: o4-mini, tpm: 100000000, latency: { ttft: 2ms, tokensPerSecond: 0 } }
  - { name: text-embedding-3-small, model: text-embedding-3-small }
`

// batchGateway: fast drain rounds (100 ms) so a 1,000-line batch drains in
// seconds; a: listen, b: dir, c: sim URL.
const batchGateway = `listen: %[1]s
store: { kind: embedded, path: %[2]s/gw.db }
queue: { kind: embedded, path: %[2]s/queue.db, lockDuration: 5s }
blob: { kind: embedded, path: %[2]s/blobs }
auth: { keyCacheTTL: 30s }
timers: { drain: 100ms, rollup: 1h }
jobs: { concurrency: 8, probeBackoff: 100ms }
batch: { maxLines: 2000, maxFileBytes: 1000000, advanceInterval: 200ms }
limits: { syncInterval: 100ms, teams: { capped: { monthlyTokens: 200 } } }
backends:
  - { name: sim, url: "%[3]s", region: swedencentral, auth: { none: true } }
models:
  gpt-4o-mini:
    targets: [ { backend: sim, deployment: gpt-4o-mini } ]
    jobs: { spillToPaygo: true }
  slow:
    targets: [ { backend: sim, deployment: slow } ]
    jobs: { spillToPaygo: true }
  o4-mini:
    targets: [ { backend: sim, deployment: o4-mini } ]
    jobs: { spillToPaygo: true }
  text-embedding-3-small:
    targets: [ { backend: sim, deployment: text-embedding-3-small } ]
    jobs: { spillToPaygo: true }
`

// batchStack is a simulator and a gateway for the Batch API tests, with
// keys made before the gateway starts (the embedded store is locked then).
type batchStack struct {
	ownStack
	keys []string // keyArgs' keys, in order
}

func startBatchStack(t testing.TB, keyArgs ...[]string) *batchStack {
	t.Helper()
	dir := t.TempDir()
	simPort, gwPort := freePort(t), freePort(t)
	s := &batchStack{ownStack: ownStack{dir: dir, simURL: fmt.Sprintf("http://127.0.0.1:%d", simPort), url: fmt.Sprintf("http://127.0.0.1:%d", gwPort)}}
	s.cfgPath = filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(s.cfgPath, []byte(fmt.Sprintf(batchGateway, fmt.Sprintf("127.0.0.1:%d", gwPort), dir, s.simURL)), 0o600); err != nil {
		t.Fatal(err)
	}
	simPath := filepath.Join(dir, "sim.yaml")
	if err := os.WriteFile(simPath, []byte(batchSim), 0o600); err != nil {
		t.Fatal(err)
	}
	s.sim = start(t, dir, nil, "sim", "--listen", fmt.Sprintf("127.0.0.1:%d", simPort), "--config", simPath)
	for _, args := range append([][]string{{"--team", "research", "--app", "batch"}}, keyArgs...) {
		out, err := exec.Command(handlerBin, append([]string{"keys", "create", "--config", s.cfgPath, "--secret-only"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("keys create: %v\n%s", err, out)
		}
		s.keys = append(s.keys, strings.TrimSpace(string(out)))
	}
	s.key = s.keys[0]
	waitHTTP(t, s.sim, s.simURL+"/sim/usage")
	s.startGateway(t)
	return s
}

func (s *batchStack) client(key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(s.url+"/openai/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// stop ends the gateway with SIGTERM (the ledger is flushed).
func (s *ownStack) stop(t testing.TB) {
	t.Helper()
	_ = s.gw.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.gw.done:
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not stop")
	}
}

// usageByClass runs `handler usage report --by class,model` on the stopped
// gateway's store: the batch-class row of model.
func usageBatch(t testing.TB, cfgPath, model string) (requests, prompt, completion int64) {
	t.Helper()
	out, err := exec.Command(handlerBin, "usage", "report", "--config", cfgPath, "--format", "json", "--by", "class,model").CombinedOutput()
	if err != nil {
		t.Fatalf("usage report: %v\n%s", err, out)
	}
	var rep struct {
		Rows []struct {
			Class            string `json:"class"`
			Model            string `json:"model"`
			Requests         int64  `json:"requests"`
			PromptTokens     int64  `json:"promptTokens"`
			CompletionTokens int64  `json:"completionTokens"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("usage report %s: %v", out, err)
	}
	for _, r := range rep.Rows {
		if r.Class == "batch" && r.Model == model {
			requests, prompt, completion = requests+r.Requests, prompt+r.PromptTokens, completion+r.CompletionTokens
		}
	}
	return
}

// batchInput is n chat lines for model, custom ids req-0000….
func batchInput(model string, n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"custom_id":"req-%04d","method":"POST","url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"line %d"}],"max_tokens":20}}`+"\n", i, model, i)
	}
	return b.Bytes()
}

func uploadBatch(t testing.TB, ctx context.Context, c openai.Client, data []byte) string {
	t.Helper()
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(data), "input.jsonl", "application/jsonl"),
		Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	if f.Bytes != int64(len(data)) || f.Purpose != "batch" || f.Filename != "input.jsonl" {
		t.Fatalf("file object: %+v", f)
	}
	return f.ID
}

// waitBatch polls until the batch is terminal, noting the statuses seen.
func waitBatch(t testing.TB, ctx context.Context, c openai.Client, id string, within time.Duration) (*openai.Batch, []string) {
	t.Helper()
	var seen []string
	start := time.Now()
	deadline := start.Add(within)
	for {
		b, err := c.Batches.Get(ctx, id)
		if err != nil {
			t.Fatalf("get batch: %v", err)
		}
		if len(seen) == 0 || !strings.HasPrefix(seen[len(seen)-1], string(b.Status)+" ") {
			seen = append(seen, fmt.Sprintf("%s at %.1fs", b.Status, time.Since(start).Seconds()))
		}
		switch b.Status {
		case openai.BatchStatusCompleted, openai.BatchStatusFailed, openai.BatchStatusCancelled, openai.BatchStatusExpired:
			return b, seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s still %s after %v (counts %+v; seen %v)", id, b.Status, within, b.RequestCounts, seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// outLine is a line of an output or error file.
type outLine struct {
	ID       string `json:"id"`
	CustomID string `json:"custom_id"`
	Response *struct {
		StatusCode int             `json:"status_code"`
		RequestID  string          `json:"request_id"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func download(t testing.TB, ctx context.Context, c openai.Client, fileID string) []outLine {
	t.Helper()
	if fileID == "" {
		return nil
	}
	resp, err := c.Files.Content(ctx, fileID)
	if err != nil {
		t.Fatalf("content %s: %v", fileID, err)
	}
	defer resp.Body.Close()
	var out []outLine
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var l outLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// usageOf sums the usage of chat completions in output lines.
func usageOf(t testing.TB, lines []outLine) (prompt, completion int64) {
	t.Helper()
	for _, l := range lines {
		var b struct {
			Object string `json:"object"`
			Usage  struct {
				PromptTokens     int64 `json:"prompt_tokens"`
				CompletionTokens int64 `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(l.Response.Body, &b); err != nil || b.Object != "chat.completion" || b.Usage.PromptTokens == 0 {
			t.Fatalf("output line %s: not a chat completion with usage: %s", l.CustomID, l.Response.Body)
		}
		prompt += b.Usage.PromptTokens
		completion += b.Usage.CompletionTokens
	}
	return
}

// TestBatchAPIOpenAIClient is the acceptance with the official
// openai-go client: 1,000 lines uploaded, a batch created, drained while
// the simulator is idle, the output downloaded in input order;
// request_counts and the ledger match the simulator's own record exactly.
// Then: lines that fail validation are reported per line and the rest
// runs; a batch cancelled mid-way keeps its finished lines; the Azure
// paths work with the Azure client.
func TestBatchAPIOpenAIClient(t *testing.T) {
	s := startBatchStack(t, []string{"--team", "research", "--app", "scoped", "--models", "gpt-4o-mini,slow", "--max-output-tokens", "50", "--over-cap", "reject"},
		[]string{"--team", "capped", "--app", "budget"})
	ctx := context.Background()
	c := s.client(s.key)
	const n = 1000

	in := batchInput("gpt-4o-mini", n)
	fileID := uploadBatch(t, ctx, c, in)
	start := time.Now()
	b, err := c.Batches.New(ctx, openai.BatchNewParams{InputFileID: fileID, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if b.Status != openai.BatchStatusValidating || b.RequestCounts.Total != n || b.InputFileID != fileID || b.ExpiresAt-b.CreatedAt != 24*3600 {
		t.Fatalf("created batch: %+v", b)
	}
	done, seen := waitBatch(t, ctx, c, b.ID, 60*time.Second)
	t.Logf("1,000 lines: %s in %v (statuses %v)", done.Status, time.Since(start).Round(10*time.Millisecond), seen)
	if done.Status != openai.BatchStatusCompleted || done.RequestCounts.Completed != n || done.RequestCounts.Failed != 0 ||
		done.OutputFileID == "" || done.ErrorFileID != "" || done.CompletedAt == 0 || done.InProgressAt == 0 {
		t.Fatalf("finished batch: status %s counts %+v output %q error %q", done.Status, done.RequestCounts, done.OutputFileID, done.ErrorFileID)
	}
	out := download(t, ctx, c, done.OutputFileID)
	if len(out) != n {
		t.Fatalf("output lines: got %d, want %d", len(out), n)
	}
	for i, l := range out {
		if want := fmt.Sprintf("req-%04d", i); l.CustomID != want || l.Response == nil || l.Response.StatusCode != 200 || l.Error != nil {
			t.Fatalf("output line %d: custom_id %q (want %s), response %+v, error %+v", i, l.CustomID, want, l.Response, l.Error)
		}
	}
	prompt, completion := usageOf(t, out)
	sim := jobsSimUsage(t, s.simURL, "gpt-4o-mini")
	if sim.Requests != n || sim.PromptTokens != prompt || sim.CompletionTokens != completion {
		t.Errorf("simulator: %d requests, %d+%d tokens; output file: %d lines, %d+%d tokens", sim.Requests, sim.PromptTokens, sim.CompletionTokens, n, prompt, completion)
	}
	// The input file is still listed and readable; the output file is the caller's too.
	if f, err := c.Files.Get(ctx, done.OutputFileID); err != nil || f.Purpose != "batch_output" {
		t.Errorf("output file object: %+v %v", f, err)
	}

	t.Run("line errors", func(t *testing.T) {
		scoped := s.client(s.keys[1])
		lines := []string{
			`{"custom_id":"ok-1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"}]}}`,
			`{"custom_id":"broken","method":"POST","url":"/v1/chat/completions","body":{"model":`,
			`{"custom_id":"wrong-url","method":"POST","url":"/v1/embeddings","body":{"model":"text-embedding-3-small","input":"x"}}`,
			`{"custom_id":"ok-2","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"b"}]}}`,
			`{"custom_id":"scope","method":"POST","url":"/v1/chat/completions","body":{"model":"o4-mini","messages":[{"role":"user","content":"c"}]}}`,
			`{"custom_id":"ok-1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"dup"}]}}`,
			`{"custom_id":"ok-3","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"d"}]}}`,
			`{"custom_id":"cap","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","max_tokens":500,"messages":[{"role":"user","content":"e"}]}}`,
		}
		before := jobsSimUsage(t, s.simURL, "gpt-4o-mini").Requests
		id := uploadBatch(t, ctx, scoped, []byte(strings.Join(lines, "\n")+"\n"))
		b, err := scoped.Batches.New(ctx, openai.BatchNewParams{InputFileID: id, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
			CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Errors.Data) != 5 || b.Errors.Data[0].Line != 2 || b.Errors.Data[0].Code != "invalid_json_line" {
			t.Errorf("batch errors at creation: %+v", b.Errors.Data)
		}
		done, _ := waitBatch(t, ctx, scoped, b.ID, 30*time.Second)
		if done.Status != openai.BatchStatusCompleted || done.RequestCounts.Total != 8 || done.RequestCounts.Completed != 3 || done.RequestCounts.Failed != 5 {
			t.Fatalf("batch: %s %+v", done.Status, done.RequestCounts)
		}
		out, errs := download(t, ctx, scoped, done.OutputFileID), download(t, ctx, scoped, done.ErrorFileID)
		var got []string
		for _, l := range out {
			got = append(got, l.CustomID)
		}
		if strings.Join(got, ",") != "ok-1,ok-2,ok-3" {
			t.Errorf("output custom_ids: %v", got)
		}
		got = nil
		for _, l := range errs {
			if l.Response != nil || l.Error == nil {
				t.Errorf("error line %+v", l)
				continue
			}
			got = append(got, l.CustomID+"="+l.Error.Code)
		}
		if want := "broken=invalid_json_line,wrong-url=mismatched_endpoint,scope=model_not_allowed,ok-1=duplicate_custom_id,cap=parameter_above_limit"; strings.Join(got, ",") != want {
			t.Errorf("error file: got %v, want %s", got, want)
		}
		if d := jobsSimUsage(t, s.simURL, "gpt-4o-mini").Requests - before; d != 3 {
			t.Errorf("simulator requests for the batch: got %d, want 3", d)
		}
	})

	t.Run("cancel mid-way", func(t *testing.T) {
		id := uploadBatch(t, ctx, c, batchInput("slow", 200))
		b, err := c.Batches.New(ctx, openai.BatchNewParams{InputFileID: id, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
			CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			g, err := c.Batches.Get(ctx, b.ID)
			if err != nil {
				t.Fatal(err)
			}
			if g.RequestCounts.Completed >= 20 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("batch never got going: %+v", g)
			}
		}
		cb, err := c.Batches.Cancel(ctx, b.ID)
		if err != nil || cb.Status != openai.BatchStatusCancelling || cb.CancellingAt == 0 {
			t.Fatalf("cancel: %+v %v", cb, err)
		}
		done, _ := waitBatch(t, ctx, c, b.ID, 30*time.Second)
		out, errs := download(t, ctx, c, done.OutputFileID), download(t, ctx, c, done.ErrorFileID)
		sim := jobsSimUsage(t, s.simURL, "slow")
		t.Logf("cancelled after %d of 200 lines (simulator answered %d)", done.RequestCounts.Completed, sim.Requests)
		if done.Status != openai.BatchStatusCancelled || done.CancelledAt == 0 || int64(done.RequestCounts.Completed) != sim.Requests ||
			len(out) != int(done.RequestCounts.Completed) || len(out)+len(errs) != 200 || len(out) == 200 {
			t.Fatalf("cancelled batch: %s %+v; %d output lines, %d error lines; simulator %d", done.Status, done.RequestCounts, len(out), len(errs), sim.Requests)
		}
		for _, l := range errs {
			if l.Error == nil || l.Error.Code != "batch_cancelled" {
				t.Fatalf("error line: %+v", l)
			}
		}
		if _, err := c.Batches.Cancel(ctx, b.ID); err == nil || !strings.Contains(err.Error(), "409") {
			t.Errorf("cancelling a cancelled batch: %v, want 409", err)
		}
	})

	t.Run("budget", func(t *testing.T) {
		capped := s.client(s.keys[2])
		id := uploadBatch(t, ctx, capped, batchInput("gpt-4o-mini", 10))
		params := openai.BatchNewParams{InputFileID: id, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: "24h"}
		b, err := capped.Batches.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		// Ten lines of ~28 tokens each spend the team's 200-token budget.
		if done, _ := waitBatch(t, ctx, capped, b.ID, 30*time.Second); done.RequestCounts.Completed != 10 {
			t.Fatalf("batch: %+v", done.RequestCounts)
		}
		time.Sleep(300 * time.Millisecond) // the limiter's sync interval
		_, err = capped.Batches.New(ctx, params)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.Code != "monthly_budget_exceeded" {
			t.Errorf("a batch once the budget is spent: %v, want monthly_budget_exceeded", err)
		}
	})

	t.Run("upload errors", func(t *testing.T) {
		for name, tc := range map[string]struct {
			purpose, file string
			code          int
			want          string
		}{
			"too large":     {"batch", strings.Repeat("x", 1000001), 413, "file_too_large"},
			"other purpose": {"fine-tune", "x", 400, "purpose"},
			"no file":       {"batch", "", 400, "file field is required"},
		} {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			_ = mw.WriteField("purpose", tc.purpose)
			if tc.file != "" {
				fw, _ := mw.CreateFormFile("file", "in.jsonl")
				_, _ = fw.Write([]byte(tc.file))
			}
			_ = mw.Close()
			code, _, body := jcall(t, "POST", s.url+"/openai/v1/files", s.key, buf.String(), map[string]string{"Content-Type": mw.FormDataContentType()})
			if code != tc.code || !strings.Contains(string(body), tc.want) || !strings.Contains(string(body), `"error"`) {
				t.Errorf("%s: %d %s, want %d %s", name, code, body, tc.code, tc.want)
			}
		}
	})

	t.Run("azure paths", func(t *testing.T) {
		az := openai.NewClient(azure.WithEndpoint(s.url, "2024-10-21"), azure.WithAPIKey(s.key), azure.WithUnsafeAllowHTTP(), option.WithMaxRetries(0))
		id := uploadBatch(t, ctx, az, batchInput("gpt-4o-mini", 3))
		// Azure's examples name the endpoint without /v1.
		b, err := az.Batches.New(ctx, openai.BatchNewParams{InputFileID: id, Endpoint: "/chat/completions", CompletionWindow: "24h"})
		if err != nil {
			t.Fatal(err)
		}
		done, _ := waitBatch(t, ctx, az, b.ID, 30*time.Second)
		if done.Status != openai.BatchStatusCompleted || len(download(t, ctx, az, done.OutputFileID)) != 3 {
			t.Fatalf("azure batch: %+v", done)
		}
		page, err := az.Batches.List(ctx, openai.BatchListParams{Limit: openai.Int(2)})
		if err != nil || len(page.Data) != 2 || !page.HasMore || page.Data[0].ID != b.ID {
			t.Fatalf("list: %+v %v", page, err)
		}
		if _, err := az.Files.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := az.Files.Get(ctx, id); err == nil || !strings.Contains(err.Error(), "404") {
			t.Errorf("deleted file: %v, want 404", err)
		}
		code, _, body := jcall(t, "GET", s.url+"/openai/batches", s.key, "", nil)
		if code != 400 || !strings.Contains(string(body), "missing_api_version") {
			t.Errorf("no api-version: %d %s", code, body)
		}
	})

	// The ledger: one batch row per line run, matching the simulator.
	s.stop(t)
	for _, m := range []string{"gpt-4o-mini", "slow"} {
		sim := jobsSimUsage(t, s.simURL, m)
		req, p, cpl := usageBatch(t, s.cfgPath, m)
		if req != sim.Requests || p != sim.PromptTokens || cpl != sim.CompletionTokens {
			t.Errorf("%s: ledger %d requests %d+%d tokens; simulator %d requests %d+%d", m, req, p, cpl, sim.Requests, sim.PromptTokens, sim.CompletionTokens)
		}
	}
}

// TestBatchSurvivesSIGKILL: the gateway is SIGKILLed twice while a batch
// runs: once while its lines are still being queued (validating, some
// already answered), once while they run; after each restart the batch goes
// on, and it completes with every line exactly once in the output file (in
// input order) and exactly one batch-class ledger row per line. Only a line
// that was running at a kill may reach the simulator twice (it is then
// billed once).
func TestBatchSurvivesSIGKILL(t *testing.T) {
	const n = 400
	s := startBatchStack(t)
	ctx := context.Background()
	c := s.client(s.key)
	id := uploadBatch(t, ctx, c, batchInput("slow", n))
	b, err := c.Batches.New(ctx, openai.BatchNewParams{InputFileID: id, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatal(err)
	}
	kill := func(what string, when func(g *openai.Batch, sim int64) bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			g, err := c.Batches.Get(ctx, b.ID)
			if err != nil {
				t.Fatal(err)
			}
			if sim := jobsSimUsage(t, s.simURL, "slow").Requests; when(g, sim) {
				if err := s.gw.cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				<-s.gw.done
				t.Logf("killed the gateway %s: batch %s, %d lines counted done, simulator had answered %d", what, g.Status, g.RequestCounts.Completed, sim)
				s.startGateway(t)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("never %s: %+v", what, g)
			}
		}
	}
	// While queueing: the batch still validating and at least one of its
	// lines already a job. (Waiting for 20 answered lines, as before, missed
	// the window on a quiet machine: 400 lines queue in well under a second.)
	// How many lines were queued when the kill lands depends on the
	// machine; TestSubmitResumesAfterCrash (internal/batch) stops queueing
	// part-way deterministically.
	kill("while queueing", func(g *openai.Batch, sim int64) bool {
		return g.Status == openai.BatchStatusValidating && batchJobsListed(t, s.url, s.key) > 0
	})
	kill("while running", func(g *openai.Batch, sim int64) bool {
		return g.Status == openai.BatchStatusInProgress && g.RequestCounts.Completed >= 200
	})
	done, _ := waitBatch(t, ctx, c, b.ID, 60*time.Second)
	if done.Status != openai.BatchStatusCompleted || done.RequestCounts.Completed != n || done.RequestCounts.Failed != 0 || done.ErrorFileID != "" {
		t.Fatalf("batch after the restart: %s %+v error file %q", done.Status, done.RequestCounts, done.ErrorFileID)
	}
	out := download(t, ctx, c, done.OutputFileID)
	if len(out) != n {
		t.Fatalf("output lines: got %d, want %d", len(out), n)
	}
	for i, l := range out {
		if want := fmt.Sprintf("req-%04d", i); l.CustomID != want || l.Response == nil || l.Response.StatusCode != 200 {
			t.Fatalf("output line %d: %+v, want %s with 200", i, l, want)
		}
	}
	sim := jobsSimUsage(t, s.simURL, "slow")
	s.stop(t)
	req, p, cpl := usageBatch(t, s.cfgPath, "slow")
	t.Logf("simulator answered %d requests for %d lines; ledger %d rows", sim.Requests, n, req)
	if req != n {
		t.Errorf("ledger batch rows: got %d, want %d (one per line)", req, n)
	}
	if sim.Requests < n || sim.Requests > n+16 { // jobs.concurrency lines may have been running at each kill
		t.Errorf("simulator requests: got %d, want %d..%d", sim.Requests, n, n+16)
	}
	if sim.Requests == n && (p != sim.PromptTokens || cpl != sim.CompletionTokens) {
		t.Errorf("ledger tokens %d+%d, simulator %d+%d", p, cpl, sim.PromptTokens, sim.CompletionTokens)
	}
}

// batchJobsListed is how many jobs GET /jobs lists for the key (one page of
// up to 1,000; a batch's lines are jobs of the key that created it).
func batchJobsListed(t testing.TB, url, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/jobs?limit=1000", nil)
	req.Header.Set("api-key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Data []json.RawMessage `json:"data"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /jobs: %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	return len(page.Data)
}
