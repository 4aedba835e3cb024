package test

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/foundry-gateway/gateway/internal/hostemu"
)

// buildPackage runs the real package command (`handler package`, what
// `make package` runs) on the repository's host.json and functions/ with
// the test's gateway config, and returns the zip.
func buildPackage(t *testing.T, dir, gatewayConfig string) string {
	t.Helper()
	zipPath := filepath.Join(dir, "gateway.zip")
	cmd := exec.Command(handlerBin, "package", "--out", zipPath, "--binary", handlerBin,
		"--gateway-config", gatewayConfig, "--root", repoRoot())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("handler package: %v\n%s", err, out)
	}
	return zipPath
}

// TestFunctionsHost runs the deployment package under the host emulator
// (internal/hostemu): the zip built by the package command is unzipped and
// indexed as the Functions host does, the handler is started from host.json,
// clients go through the host's proxy with the official OpenAI SDK, and the
// drain and rollup timers are fired by the host on their NCRONTAB schedules
// over the payload protocol.
func TestFunctionsHost(t *testing.T) {
	dir := t.TempDir()
	simPort := freePort(t)
	simURL := fmt.Sprintf("http://127.0.0.1:%d", simPort)
	cfgPath := filepath.Join(dir, "gateway.yaml")
	cfg := fmt.Sprintf(`store: { kind: embedded, path: %s }
queue: { kind: embedded, path: %s }
proxy: { exposeBackend: true }
backends:
  - { name: sim, url: "%s", region: swedencentral, auth: { none: true } }
models:
  gpt-4o-mini:
    targets:
      - { backend: sim, deployment: gpt-4o-mini }
    jobs: { spillToPaygo: true }
  text-embedding-3-small:
    targets:
      - { backend: sim, deployment: text-embedding-3-small }
`, filepath.Join(dir, "gw.db"), filepath.Join(dir, "queue.db"), simURL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	zipPath := buildPackage(t, dir, cfgPath)
	t.Logf("handler package took %v", time.Since(began))
	simCfg := filepath.Join(dir, "sim.yaml")
	if err := os.WriteFile(simCfg, []byte(fastSim), 0o600); err != nil {
		t.Fatal(err)
	}
	sim := start(t, dir, nil, "sim", "--listen", fmt.Sprintf("127.0.0.1:%d", simPort), "--config", simCfg)
	waitHTTP(t, sim, simURL+"/sim/usage")
	keyOut, err := exec.Command(handlerBin, "keys", "create", "--config", cfgPath, "--team", "t", "--app", "functions", "--admin", "--secret-only").CombinedOutput()
	if err != nil {
		t.Fatalf("keys create: %v: %s", err, keyOut)
	}
	key := strings.TrimSpace(string(keyOut))

	t.Run("nested layout indexes zero functions", func(t *testing.T) {
		nested := filepath.Join(dir, "nested.zip")
		nestZip(t, zipPath, nested)
		h, err := hostemu.Start(context.Background(), hostemu.Options{Zip: nested, Dir: filepath.Join(dir, "nested")})
		if err == nil {
			h.Close()
			t.Fatal("the emulated host ran a package with functions/<name>/function.json; the real host indexes zero functions there")
		}
		if !strings.Contains(err.Error(), "zero functions") {
			t.Fatalf("error %v, want zero functions indexed", err)
		}
	})

	// Start the host's clock 5 s before a five-minute boundary, so that
	// the rollup ("0 */5 * * * *") comes due soon; the drain ("*/10 * * * * *")
	// runs every 10 s.
	boundary := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	out := &proc{done: make(chan struct{})}
	began = time.Now()
	host, err := hostemu.Start(context.Background(), hostemu.Options{
		Zip: zipPath, Dir: filepath.Join(dir, "wwwroot"), Output: out,
		// Log lines unbuffered: the test reads them right after a request.
		AppSettings: map[string]string{"FUNCTIONS_WORKER_RUNTIME": "custom", "GATEWAY_LOG_BUFFER": "off"},
		ClockStart:  boundary.Add(-5 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		host.Close()
		if t.Failed() {
			t.Logf("handler output:\n%s", tail(out.Output(), 6000))
		}
	})
	t.Logf("unzipped, indexed and handler ready in %v", time.Since(began))
	var names []string
	for _, f := range host.Functions {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "drain,gateway,rollup" || len(host.FunctionErrors) > 0 {
		t.Fatalf("indexed %v (errors %v), want drain, gateway, rollup", names, host.FunctionErrors)
	}
	if lines := out.LogLines("gateway listening"); len(lines) != 1 || lines[0]["under_functions"] != true {
		t.Fatalf("handler did not detect the Functions host: %v", lines)
	}
	c := openai.NewClient(option.WithBaseURL(host.URL+"/openai/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
	ctx := context.Background()

	t.Run("chat", func(t *testing.T) {
		var raw *http.Response
		resp, err := c.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "through the host"), option.WithResponseInto(&raw))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || resp.Choices[0].Message.Content == "" || resp.Usage.TotalTokens == 0 {
			t.Fatalf("choices %+v usage %+v", resp.Choices, resp.Usage)
		}
		checkRequestIDs(t, out, raw.Header)
	})

	// Incremental means the first chunks reach the client while the
	// simulator is still inside the stream: it pauses 2 s after its second
	// chunk and counts the request in /sim/usage only after its last one.
	// So the check is causal, not timed: when the first chunk arrives the
	// simulator must not have counted the request yet (a host or gateway
	// that buffered the body would deliver it only after that). A wall-time
	// bound on the first chunk (it was 1 s) failed on a loaded machine
	// while the stream was delivered incrementally.
	t.Run("stream arrives incrementally", func(t *testing.T) {
		const pause = 2 * time.Second
		before := jobsSimUsage(t, simURL, "gpt-4o-mini").Requests
		begin := time.Now()
		st := c.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o-mini", "stream via host"),
			option.WithHeader("x-sim-pause-after-chunk", "2"), option.WithHeader("x-sim-pause-ms", strconv.Itoa(int(pause.Milliseconds()))),
			option.WithHeader("x-sim-latency-ttft-ms", "0"))
		var first time.Duration
		var text strings.Builder
		n := 0
		for st.Next() {
			n++
			if n == 1 {
				first = time.Since(begin)
				if got := jobsSimUsage(t, simURL, "gpt-4o-mini").Requests; got != before {
					t.Errorf("first chunk after %v, when the simulator had already finished the stream (%d requests counted, %d before): the body was buffered", first, got, before)
				}
			}
			if ch := st.Current(); len(ch.Choices) > 0 {
				text.WriteString(ch.Choices[0].Delta.Content)
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		total := time.Since(begin)
		if total < pause {
			t.Fatalf("stream took %v, less than the simulator's %v pause: the pause did not happen", total, pause)
		}
		if got := jobsSimUsage(t, simURL, "gpt-4o-mini").Requests; got != before+1 {
			t.Errorf("simulator counted %d requests after the stream, want %d", got, before+1)
		}
		if n < 3 || text.Len() == 0 {
			t.Errorf("%d chunks, text %q; want the chunks before and after the pause", n, text.String())
		}
		t.Logf("first chunk after %v, stream done after %v", first, total)
	})

	t.Run("embeddings", func(t *testing.T) {
		resp, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
			Model: "text-embedding-3-small",
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"one", "two words"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Data) != 2 || len(resp.Data[0].Embedding) == 0 || resp.Usage.PromptTokens == 0 {
			t.Fatalf("data %d usage %+v", len(resp.Data), resp.Usage)
		}
	})

	t.Run("host-owned and timer routes are not client routes", func(t *testing.T) {
		for _, p := range []string{"/admin/host/status", "/runtime/webhooks/eventgrid", "/drain", "/rollup"} {
			code, _, b := jcall(t, http.MethodPost, host.URL+p, key, `{"Data":{},"Metadata":{}}`, nil)
			if code != http.StatusNotFound {
				t.Errorf("POST %s through the host: %d %s, want 404", p, code, b)
			}
		}
	})

	t.Run("async job drained by the timer", func(t *testing.T) {
		j := submitJob(t, host.URL, key, chatBody("queued through the host"), nil)
		deadline := time.Now().Add(40 * time.Second)
		for {
			code, got := getJob(t, host.URL, key, j.ID)
			if code == http.StatusOK && got.Status == "succeeded" {
				if got.ResultStatus != 200 || len(got.Result) == 0 {
					t.Fatalf("job %+v", got)
				}
				break
			}
			if time.Now().After(deadline) || (code == http.StatusOK && terminal(got.Status)) {
				t.Fatalf("job %s: %d %+v; want succeeded after a drain", j.ID, code, got)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// The job finishes inside a drain invocation; wait for it to end.
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := host.WaitInvocations(wctx, "drain", 1); err != nil {
			t.Fatal(err)
		}
		checkTimer(t, host, out, "drain")
	})

	// The emulator sends TimerInfo as an object (a POCO, reference A5);
	// values the host JSON-encodes as strings must work too.
	t.Run("timer payload double-encoded", func(t *testing.T) {
		tick := `{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":true}`
		body := fmt.Sprintf(`{"Data":{"tick":%q},"Metadata":{"sys":"{\"MethodName\":\"rollup\"}"}}`, tick)
		hdr := map[string]string{"X-Azure-Functions-InvocationId": "inv-double", "X-Azure-Functions-HostVersion": hostemu.DefaultHostVersion,
			"User-Agent": "Azure-Functions-Host/" + hostemu.DefaultHostVersion}
		code, _, b := jcall(t, http.MethodPost, host.HandlerURL+"/rollup", "", body, hdr)
		if code != http.StatusOK || !strings.Contains(string(b), "past due") {
			t.Fatalf("double-encoded timer payload: %d %s", code, b)
		}
	})

	t.Run("rollup fired by the timer", func(t *testing.T) {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := host.WaitInvocations(wctx, "rollup", 1); err != nil {
			t.Fatal(err)
		}
		checkTimer(t, host, out, "rollup")
	})
}

// checkTimer: fn's invocations succeeded, came due on the schedule, and
// the handler logged each under the host's invocation id.
func checkTimer(t *testing.T, host *hostemu.Host, out *proc, fn string) {
	t.Helper()
	var invs []hostemu.Invocation
	for _, inv := range host.Invocations() {
		if inv.Function == fn {
			invs = append(invs, inv)
		}
	}
	if len(invs) == 0 {
		t.Fatalf("no %s invocation", fn)
	}
	logged := map[string]bool{}
	for _, l := range out.LogLines("timer invocation") {
		if l["function"] == fn {
			id, _ := l["invocation_id"].(string)
			logged[id] = true
		}
	}
	for _, inv := range invs {
		if inv.Err != nil || inv.Status != http.StatusOK || len(inv.Logs) == 0 {
			t.Errorf("%s invocation %s: status %d, err %v, logs %q", fn, inv.ID, inv.Status, inv.Err, inv.Logs)
		}
		if !logged[inv.ID] {
			t.Errorf("%s invocation %s not in the handler's log", fn, inv.ID)
		}
		if fn == "rollup" && (inv.Due.Second() != 0 || inv.Due.Minute()%5 != 0) {
			t.Errorf("rollup came due at %v, not on its 0 */5 * * * * schedule", inv.Due)
		}
	}
}

// checkRequestIDs: the client's x-request-id is the gateway's, the one in
// the gateway's request log; the backend's ids are visible beside it.
func checkRequestIDs(t *testing.T, out *proc, h http.Header) {
	t.Helper()
	rid := h.Get("X-Request-Id")
	backend := h.Get("X-Gateway-Backend-Request-Id")
	if rid == "" || backend == "" || rid == backend || h.Get("Apim-Request-Id") == "" || len(h.Values("X-Request-Id")) != 1 {
		t.Fatalf("x-request-id %q, x-gateway-backend-request-id %q, apim-request-id %q: want the gateway's id and the backend's apart",
			h.Values("X-Request-Id"), backend, h.Get("Apim-Request-Id"))
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		for _, l := range out.LogLines("request") {
			if l["request_id"] == rid {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request log line with request_id %s", rid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nestZip rewrites the package at src into dst with every
// <name>/function.json moved to functions/<name>/function.json: the layout
// the real host indexes as zero functions.
func nestZip(t *testing.T, src, dst string) {
	t.Helper()
	r, err := zip.OpenReader(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	moved := 0
	for _, e := range r.File {
		h := e.FileHeader
		if strings.Count(h.Name, "/") == 1 && strings.HasSuffix(h.Name, "/function.json") {
			h.Name = "functions/" + h.Name
			moved++
		}
		// Raw copy: no recompression of the handler (slow under -race).
		w, err := zw.CreateRaw(&h)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := e.OpenRaw()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, rc); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if moved != 3 {
		t.Fatalf("moved %d function.json files, want 3", moved)
	}
}
