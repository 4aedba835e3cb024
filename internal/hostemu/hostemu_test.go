package hostemu

import (
	"archive/zip"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the custom handler: with FAKE_HANDLER set it
// serves what the host talks to and echoes what it received.
func TestMain(m *testing.M) {
	if os.Getenv("FAKE_HANDLER") == "1" {
		fakeHandler()
		return
	}
	os.Exit(m.Run())
}

func fakeHandler() {
	echo := func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/failing" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		env := map[string]string{}
		for _, k := range []string{"FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_CUSTOMHANDLER_WORKER_ID", "FUNCTIONS_HTTPWORKER_PORT",
			"FUNCTIONS_HTTPWORKER_ID", "FUNCTIONS_APP_ROOT_PATH", "MY_SETTING"} {
			env[k] = os.Getenv(k)
		}
		wd, _ := os.Getwd()
		_ = json.NewEncoder(w).Encode(map[string]any{
			"Outputs": map[string]any{}, "ReturnValue": nil,
			"Logs": []string{"echo"},
			"path": r.URL.Path, "query": r.URL.RawQuery, "method": r.Method,
			"header": r.Header, "body": string(body), "args": os.Args[1:], "env": env, "wd": wd,
		})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(2 * time.Second)
		_, _ = io.WriteString(w, "data: last\n\n")
	})
	mux.HandleFunc("/", echo)
	_ = http.ListenAndServe("127.0.0.1:"+os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT"), mux)
}

// writeZip writes a package: the test binary as handler plus files.
func writeZip(t *testing.T, files map[string]string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "app.zip")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	add := func(name string, data []byte, mode os.FileMode) {
		h := &zip.FileHeader{Name: name, Method: zip.Store}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	add("handler", bin, 0o755)
	for name, data := range files {
		add(name, []byte(data), 0o644)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	hostJSON = `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler","workingDirectory":"sub",
  "arguments":["serve","--config","%MY_SETTING%","%UNSET_SETTING%","x%MY_SETTING%y"]},"enableProxyingHttpRequest":true},
  "extensions":{"http":{"routePrefix":""}}}`
	httpFn  = `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous","route":"{*path}"},{"type":"http","direction":"out","name":"res"}]}`
	timerFn = `{"bindings":[{"type":"timerTrigger","direction":"in","name":"tick","schedule":"%FAST%"}]}`
)

func decode(t *testing.T, r io.Reader) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHost(t *testing.T) {
	zipPath := writeZip(t, map[string]string{
		"host.json": hostJSON, "gateway/function.json": httpFn, "tick/function.json": timerFn,
		"failing/function.json": timerFn, "sub/keep": "",
		// Skipped by the host: nested, invalid name, no bindings.
		"functions/nested/function.json": timerFn, "host/function.json": timerFn, "empty/function.json": `{"bindings":[]}`,
	})
	root := filepath.Join(t.TempDir(), "wwwroot")
	h, err := Start(context.Background(), Options{Zip: zipPath, Dir: root, Output: os.Stderr,
		AppSettings: map[string]string{"FAKE_HANDLER": "1", "MY_SETTING": "cfg.yaml", "FAST": "* * * * * *"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var names []string
	for _, f := range h.Functions {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "failing,gateway,tick" {
		t.Errorf("indexed %v", names)
	}
	for _, skipped := range []string{"host", "empty"} {
		if h.FunctionErrors[skipped] == "" {
			t.Errorf("%s: no function error (errors %v)", skipped, h.FunctionErrors)
		}
	}

	t.Run("proxied request", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, h.URL+"/openai/v1/chat/completions?api-version=x&a=1&a=2", strings.NewReader(`{"x":1}`))
		req.Header.Set("User-Agent", "client/1.0")
		req.Header.Set("X-Azure-Functions-InvocationId", "spoofed")
		req.Header.Set("x-ms-invocation-id", "spoofed")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		m := decode(t, resp.Body)
		hdr := m["header"].(map[string]any)
		get := func(k string) string {
			v, _ := hdr[k].([]any)
			if len(v) != 1 {
				return ""
			}
			return v[0].(string)
		}
		id := get("X-Azure-Functions-Invocationid")
		if m["path"] != "/openai/v1/chat/completions" || m["query"] != "api-version=x&a=1&a=2" || m["body"] != `{"x":1}` {
			t.Errorf("path %v query %v body %v", m["path"], m["query"], m["body"])
		}
		if id == "" || id == "spoofed" || get("X-Ms-Invocation-Id") != id || get("X-Azure-Functions-Hostversion") != DefaultHostVersion {
			t.Errorf("host headers %v", hdr)
		}
		if get("User-Agent") != "client/1.0" {
			t.Errorf("User-Agent %q: the proxy keeps the client's", get("User-Agent"))
		}
		env := m["env"].(map[string]any)
		if env["FUNCTIONS_CUSTOMHANDLER_PORT"] == "" || env["FUNCTIONS_CUSTOMHANDLER_PORT"] != env["FUNCTIONS_HTTPWORKER_PORT"] ||
			env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"] == "" || env["FUNCTIONS_APP_ROOT_PATH"] != root || env["MY_SETTING"] != "cfg.yaml" {
			t.Errorf("env %v", env)
		}
		if m["wd"] != filepath.Join(root, "sub") {
			t.Errorf("working directory %v, want %s", m["wd"], filepath.Join(root, "sub"))
		}
		if got := strings.Join(toStrings(m["args"]), " "); got != "serve --config cfg.yaml xcfg.yamly" {
			t.Errorf("args %q", got)
		}
	})

	t.Run("host-owned routes", func(t *testing.T) {
		for _, p := range []string{"/admin/host/status", "/ADMIN/functions/x", "/runtime/webhooks/durabletask"} {
			resp, err := http.Get(h.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 404 || !strings.Contains(string(b), "host-owned") {
				t.Errorf("%s: %d %s", p, resp.StatusCode, b)
			}
		}
	})

	t.Run("streaming", func(t *testing.T) {
		begin := time.Now()
		resp, err := http.Get(h.URL + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, 64)
		n, _ := resp.Body.Read(buf)
		first := time.Since(begin)
		if !strings.Contains(string(buf[:n]), "first") || first > time.Second {
			t.Errorf("first event %q after %v: not streamed", buf[:n], first)
		}
		rest, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(rest), "last") {
			t.Errorf("rest %q", rest)
		}
	})

	t.Run("timers", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ok, err := h.WaitInvocations(ctx, "tick", 2)
		if err != nil {
			t.Fatal(err)
		}
		failed, err := h.WaitInvocations(ctx, "failing", 1)
		if err != nil {
			t.Fatal(err)
		}
		if ok[0].Err != nil || ok[0].Status != 200 || len(ok[0].Logs) != 1 {
			t.Errorf("tick: %+v", ok[0])
		}
		if !ok[1].Due.After(ok[0].Due) {
			t.Errorf("tick due %v then %v", ok[0].Due, ok[1].Due)
		}
		if failed[0].Err == nil || failed[0].Status != 500 {
			t.Errorf("a 500 answer must fail the invocation: %+v", failed[0])
		}
	})
}

// TestPayloadRequest checks what a timer invocation sends.
func TestPayloadRequest(t *testing.T) {
	got := make(chan *http.Request, 1)
	bodies := make(chan []byte, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case got <- r:
			bodies <- b
		default:
		}
		_, _ = io.WriteString(w, `{"Outputs":{},"Logs":[],"ReturnValue":null}`)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	h := &Host{HandlerURL: "http://" + l.Addr().String(), opts: Options{HostVersion: "4.9.9"}, client: http.DefaultClient}
	due := time.Date(2026, 1, 1, 0, 5, 0, 0, time.UTC)
	h.invoke(context.Background(), Function{Name: "rollup", Trigger: Binding{Type: "timerTrigger", Name: "tick"}}, due, time.Time{})
	r := <-got
	b := <-bodies
	if r.Method != http.MethodPost || r.URL.Path != "/rollup" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") ||
		r.Header.Get("User-Agent") != "Azure-Functions-Host/4.9.9" || r.Header.Get("X-Azure-Functions-HostVersion") != "4.9.9" ||
		r.Header.Get("X-Azure-Functions-InvocationId") == "" || r.Header.Get("X-Ms-Invocation-Id") != "" {
		t.Errorf("request %s %s %v", r.Method, r.URL.Path, r.Header)
	}
	var p struct {
		Data     map[string]map[string]any
		Metadata map[string]map[string]any
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	tick := p.Data["tick"]
	st, _ := tick["ScheduleStatus"].(map[string]any)
	if tick["IsPastDue"] != false || st["Next"] != "2026-01-01T00:05:00.0000000Z" || st["Last"] != "0001-01-01T00:00:00" {
		t.Errorf("timer info %s", b)
	}
	if p.Metadata["sys"]["MethodName"] != "rollup" {
		t.Errorf("metadata %s", b)
	}
	if inv := h.Invocations(); len(inv) != 1 || inv[0].Err != nil {
		t.Errorf("invocations %+v", inv)
	}
}

func TestMatchRoute(t *testing.T) {
	tests := []struct {
		tmpl, path string
		ok         bool
	}{
		{"{*path}", "/", true},
		{"{*path}", "/openai/v1/chat/completions", true},
		{"api/{*path}", "/openai/v1", false},
		{"api/{*path}", "/API/x/y", true},
		{"api/{*path}", "/api", true},
		{"items/{id}", "/items/3", true},
		{"items/{id}", "/items/3/4", false},
		{"items/{id}", "/items", false},
		{"items/{id?}", "/items", true},
		{"items/{id:int}", "/items/3", true},
		{"hello", "/hello", true},
		{"hello", "/hello/x", false},
	}
	for _, tt := range tests {
		if got := MatchRoute(tt.tmpl, tt.path); got != tt.ok {
			t.Errorf("MatchRoute(%q, %q) = %v, want %v", tt.tmpl, tt.path, got, tt.ok)
		}
	}
}

func TestExpandArgs(t *testing.T) {
	env := map[string]string{"CFG": "/home/site/wwwroot/gateway.yaml", "SPACED": "a b"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	got := expandArgs([]string{"serve", "--config", "%CFG%", "%MISSING%", "%SPACED%", `"q r"`}, getenv)
	want := []string{"serve", "--config", "/home/site/wwwroot/gateway.yaml", "a", "b", "q r"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestZeroFunctions(t *testing.T) {
	zipPath := writeZip(t, map[string]string{"host.json": hostJSON, "functions/gateway/function.json": httpFn})
	_, err := Start(context.Background(), Options{Zip: zipPath, Dir: filepath.Join(t.TempDir(), "root")})
	if err == nil || !strings.Contains(err.Error(), "zero functions") {
		t.Fatalf("Start: %v, want zero functions indexed", err)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
