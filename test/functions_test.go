package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostJSON is the part of host.json the Functions host uses to run us.
type hostJSON struct {
	Version       string `json:"version"`
	CustomHandler struct {
		Description struct {
			DefaultExecutablePath string   `json:"defaultExecutablePath"`
			WorkingDirectory      string   `json:"workingDirectory"`
			Arguments             []string `json:"arguments"`
		} `json:"description"`
		EnableProxyingHTTPRequest bool `json:"enableProxyingHttpRequest"`
	} `json:"customHandler"`
	Extensions struct {
		HTTP struct {
			RoutePrefix *string `json:"routePrefix"`
		} `json:"http"`
	} `json:"extensions"`
}

type binding struct {
	Type      string   `json:"type"`
	Direction string   `json:"direction"`
	Name      string   `json:"name"`
	Route     string   `json:"route"`
	Methods   []string `json:"methods"`
	Schedule  string   `json:"schedule"`
}

type functionJSON struct {
	Bindings []binding `json:"bindings"`
}

// isProxiedHTTP mirrors the host's IsHttpInAndOutFunction: exactly one
// httpTrigger input and exactly one http output.
func isProxiedHTTP(f functionJSON) bool {
	in, out := 0, 0
	for _, b := range f.Bindings {
		if b.Type == "httpTrigger" && b.Direction == "in" {
			in++
		}
		if b.Type == "http" && b.Direction == "out" {
			out++
		}
	}
	return in == 1 && out == 1 && len(f.Bindings) == 2
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// TestFunctionsHostProtocol starts the handler the way the Azure Functions
// host does, from the repository's host.json and function.json files, and
// drives it through the three things the host does: readiness polling on
// GET /, proxying HTTP requests of the HTTP function, and payload-protocol
// POST /{function} invocations of the timer functions.
func TestFunctionsHostProtocol(t *testing.T) {
	root := repoRoot()
	var host hostJSON
	readJSON(t, filepath.Join(root, "host.json"), &host)
	if host.Version != "2.0" || !host.CustomHandler.EnableProxyingHTTPRequest {
		t.Fatalf("host.json must be version 2.0 with enableProxyingHttpRequest: %+v", host)
	}
	if host.Extensions.HTTP.RoutePrefix == nil || *host.Extensions.HTTP.RoutePrefix != "" {
		t.Fatal(`host.json extensions.http.routePrefix must be "" so OpenAI paths stay unprefixed`)
	}

	// Lay out an app root as the deployment package does.
	app := t.TempDir()
	desc := host.CustomHandler.Description
	copyFile(t, filepath.Join(root, "host.json"), filepath.Join(app, "host.json"), 0o644)
	copyFile(t, handlerBin, filepath.Join(app, desc.DefaultExecutablePath), 0o755)
	fnDirs, _ := filepath.Glob(filepath.Join(root, "functions", "*", "function.json"))
	if len(fnDirs) == 0 {
		t.Fatal("no functions/*/function.json")
	}
	functions := map[string]functionJSON{}
	for _, p := range fnDirs {
		name := filepath.Base(filepath.Dir(p))
		var f functionJSON
		readJSON(t, p, &f)
		functions[name] = f
		copyFile(t, p, filepath.Join(app, "functions", name, "function.json"), 0o644)
	}

	simPort, port := freePort(t), freePort(t)
	simURL := fmt.Sprintf("http://127.0.0.1:%d", simPort)
	cfg := fmt.Sprintf(`store: { kind: embedded, path: %s }
backends:
  - { name: sim, url: "%s", auth: { none: true } }
models:
  gpt-4o-mini:
    targets:
      - { backend: sim, deployment: gpt-4o-mini }
`, filepath.Join(app, "data", "gw.db"), simURL)
	if err := os.WriteFile(filepath.Join(app, "gateway.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sim := start(t, app, nil, "sim", "--listen", fmt.Sprintf("127.0.0.1:%d", simPort))
	waitHTTP(t, sim, simURL+"/sim/usage")
	keyCmd := exec.Command(handlerBin, "keys", "create", "--team", "t", "--app", "functions", "--secret-only")
	keyCmd.Dir = app // gateway.yaml in the working directory, as under the host
	keyOut, err := keyCmd.CombinedOutput()
	if err != nil {
		t.Fatalf("keys create: %v: %s", err, keyOut)
	}
	key := strings.TrimSpace(string(keyOut))

	// Start the handler as the host does: executable relative to the
	// working directory (the app root), arguments from host.json, and the
	// host's environment variables.
	workDir := app
	if desc.WorkingDirectory != "" {
		workDir = filepath.Join(app, desc.WorkingDirectory)
	}
	exe := filepath.Join(workDir, desc.DefaultExecutablePath)
	env := []string{
		"FUNCTIONS_CUSTOMHANDLER_PORT=" + fmt.Sprint(port),
		"FUNCTIONS_CUSTOMHANDLER_WORKER_ID=" + "worker-1",
		"FUNCTIONS_HTTPWORKER_PORT=" + fmt.Sprint(port),
		"FUNCTIONS_APP_ROOT_PATH=" + app,
		"FUNCTIONS_WORKER_RUNTIME=custom",
	}
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command(exe, desc.Arguments...)
	p.cmd.Dir = workDir
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("handler output:\n%s", tail(p.Output(), 4000))
		}
	})

	// 1. Readiness: the host polls / on 127.0.0.1:<port> until any response.
	handlerURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	began := time.Now()
	waitHTTP(t, p, handlerURL+"/")
	t.Logf("handler ready after %v", time.Since(began))
	if lines := p.LogLines("gateway listening"); len(lines) != 1 || lines[0]["under_functions"] != true {
		t.Errorf("handler did not detect the Functions host: %v", lines)
	}

	for name, f := range functions {
		t.Run(name, func(t *testing.T) {
			switch {
			case isProxiedHTTP(f):
				testProxiedFunction(t, f, handlerURL, key)
			case len(f.Bindings) >= 1 && f.Bindings[0].Type == "timerTrigger":
				testTimerFunction(t, name, f, handlerURL)
			default:
				t.Fatalf("function %s: no test for bindings %+v", name, f.Bindings)
			}
		})
	}
}

// testProxiedFunction plays the host's YARP proxy: any path under the
// catch-all route is forwarded as-is with the host's headers.
func testProxiedFunction(t *testing.T, f functionJSON, handlerURL, key string) {
	trig := f.Bindings[0]
	if trig.Route != "{*path}" {
		t.Fatalf("HTTP function route %q; want the catch-all {*path}", trig.Route)
	}
	methods := strings.Join(trig.Methods, ",")
	for _, m := range []string{"get", "post"} {
		if !strings.Contains(methods, m) {
			t.Fatalf("HTTP function does not accept %s", m)
		}
	}
	target, _ := url.Parse(handlerURL)
	hostProxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set("X-Azure-Functions-InvocationId", "inv-1")
			pr.Out.Header.Set("X-Azure-Functions-HostVersion", "4.1040.0")
			pr.Out.Header.Set("x-ms-invocation-id", "inv-1")
			pr.SetXForwarded()
		},
		FlushInterval: -1,
	}
	front := httptest.NewServer(hostProxy)
	defer front.Close()

	resp := post(t, context.Background(), front.URL+"/openai/v1/chat/completions", key,
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"through the host"}]}`, nil)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"usage"`)) {
		t.Fatalf("proxied chat: %d %s", resp.StatusCode, b)
	}

	// Clients cannot run the timer functions through the catch-all route:
	// the host's proxy marks their requests with x-ms-invocation-id.
	for _, timer := range []string{"/drain", "/rollup"} {
		resp := post(t, context.Background(), front.URL+timer, key, `{"Data":{},"Metadata":{}}`, nil)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !bytes.Contains(b, []byte(`"error"`)) {
			t.Errorf("POST %s through the host proxy: %d %s; want 404", timer, resp.StatusCode, b)
		}
	}

	// Streaming through the host's proxy arrives event by event.
	begin := time.Now()
	resp = post(t, context.Background(), front.URL+"/openai/v1/chat/completions", key,
		`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"stream via host"}]}`,
		map[string]string{"x-sim-pause-after-chunk": "2", "x-sim-pause-ms": "1500", "x-sim-latency-ttft-ms": "0"})
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var second time.Duration
	events := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			events++
			if events == 2 {
				second = time.Since(begin)
			}
		}
	}
	total := time.Since(begin)
	if total < 1500*time.Millisecond || second > 750*time.Millisecond {
		t.Errorf("through the host proxy: event 2 after %v, done after %v; want event 2 well before the 1.5 s pause ends", second, total)
	}
}

// testTimerFunction sends the payload-protocol body the host sends for a
// timer trigger, in both encodings the host is known to use.
func testTimerFunction(t *testing.T, name string, f functionJSON, handlerURL string) {
	b := f.Bindings[0]
	if len(strings.Fields(b.Schedule)) != 6 {
		t.Fatalf("schedule %q is not a six-field NCRONTAB expression", b.Schedule)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	tick := fmt.Sprintf(`{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"0001-01-01T00:00:00","Next":%q,"LastUpdated":"0001-01-01T00:00:00"},"IsPastDue":false}`, now)
	quoted, _ := json.Marshal(tick)
	payloads := map[string]string{
		"object":         fmt.Sprintf(`{"Data":{%q:%s},"Metadata":{"sys":{"MethodName":%q,"UtcNow":%q,"RandGuid":"6b1c"}}}`, b.Name, tick, name, now),
		"double-encoded": fmt.Sprintf(`{"Data":{%q:%s},"Metadata":{"sys":"{\"MethodName\":\"%s\"}"}}`, b.Name, quoted, name),
	}
	for form, body := range payloads {
		req, _ := http.NewRequest(http.MethodPost, handlerURL+"/"+name, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Azure-Functions-InvocationId", "inv-"+form)
		req.Header.Set("X-Azure-Functions-HostVersion", "4.1040.0")
		req.Header.Set("User-Agent", "Azure-Functions-Host/4.1040.0")
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			t.Fatalf("%s: status %d (the host fails non-2xx invocations): %s", form, resp.StatusCode, rb)
		}
		var out map[string]json.RawMessage
		if err := json.Unmarshal(rb, &out); err != nil {
			t.Fatalf("%s: not JSON: %s", form, rb)
		}
		for _, k := range []string{"Outputs", "Logs", "ReturnValue"} {
			if _, ok := out[k]; !ok {
				t.Errorf("%s: response lacks %s: %s", form, k, rb)
			}
		}
		var outputs map[string]any
		var logs []string
		if json.Unmarshal(out["Outputs"], &outputs) != nil || json.Unmarshal(out["Logs"], &logs) != nil || len(logs) == 0 {
			t.Errorf("%s: Outputs must be an object and Logs a non-empty string array: %s", form, rb)
		}
	}
}
