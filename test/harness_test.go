package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// handlerBin is the binary under test, built once in TestMain.
var handlerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fgw-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	handlerBin = filepath.Join(dir, "handler")
	// Static, as make package builds it, so that the same binary runs the
	// e2e stacks and passes the package check (no ELF interpreter).
	build := exec.Command("go", "build", "-o", handlerBin, ".")
	build.Dir = repoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build handler:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot() string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(f))
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a started handler process whose output is kept for assertions.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output returns everything the process printed so far.
func (p *proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// LogLines returns the JSON log lines with the given msg.
func (p *proc) LogLines(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.Output()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// start runs the handler binary with args and env (added to a minimal
// environment) and stops it when the test ends.
func start(t testing.TB, dir string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command(handlerBin, args...)
	p.cmd.Dir = dir
	// Log lines unbuffered: the tests read them right after a request.
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "GATEWAY_LOG_BUFFER=off"}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %v:\n%s", args, tail(p.Output(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// waitHTTP polls url until any HTTP response arrives (as the Functions host
// does for readiness) or the process exits.
func waitHTTP(t testing.TB, p *proc, url string) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("process exited before serving %s:\n%s", url, p.Output())
		default:
		}
		// The process must say it listens on that address before the
		// probe counts: a port picked free earlier can be taken by another
		// test's process meanwhile, which would answer the probe (seen
		// once: TestTelemetryAsyncJob got another stack's 200 in place of
		// its gateway's 202, while its own gateway could not bind).
		if !announced(p.Output(), u.Host) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready in time:\n%s", url, p.Output())
}

// announced reports whether out has the line a gateway ("gateway
// listening", "addr":"host:port") or a simulator ("simulator listening on
// http://host:port") prints once it listens on hostport.
func announced(out, hostport string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, "listening") && (strings.Contains(line, `"addr":"`+hostport+`"`) ||
			strings.Contains(line, "://"+hostport)) {
			return true
		}
	}
	return false
}

// stack is a simulator plus a gateway in front of it.
type stack struct {
	SimURL string
	URL    string // gateway base URL
	Key    string
	// ExtraKeys are the keys made from stackOptions.extraKeys, in order.
	ExtraKeys []string
	// CfgPath is the gateway's config file (for CLI commands).
	CfgPath string
	Sim     *proc
	GW      *proc
	Dir     string
}

// stackOptions shape a stack.
type stackOptions struct {
	// extraBackends / extraModels are YAML list items / map entries appended
	// to the generated config (indented as in the template).
	extraBackends string
	extraModels   string
	extraTop      string
	env           []string
	// store and auth replace the template's store line (embedded, in the
	// stack's directory) and auth line (keyCacheTTL 1s); the main key has the admin scope.
	store, auth string
	// maxBodyBytes replaces the template's 64 KiB maxBodyBytes when set.
	maxBodyBytes int64
	// extraKeys are `handler keys create` flag sets (e.g. --team, --app,
	// --regions) for more keys, made before the gateway starts.
	extraKeys [][]string
}

// fastSim is the simulator config of e2e stacks: the deployments of the
// built-in default, with latency small enough for tight test timeouts.
// gpt-4o-mini has a (huge) token budget so its answers carry the
// x-ratelimit-* headers the drain reads (issue 14: no signal = busy).
const fastSim = `deployments:
  - { name: gpt-4o-mini, tpm: 100000000, latency: { ttft: 5ms, tokensPerSecond: 5000 } }
  - { name: gpt-4o-mini-ptu, model: gpt-4o-mini, provisioned: true, ptuCapacityTPM: 1000000, latency: { ttft: 5ms, tokensPerSecond: 5000 } }
  - { name: o4-mini, latency: { ttft: 5ms, tokensPerSecond: 5000 } }
  - { name: text-embedding-3-small, model: text-embedding-3-small }
`

// startStack starts `handler sim` and `handler serve` with a generated
// config on the embedded store, and creates a key with the CLI.
func startStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	dir := t.TempDir()
	if o.store == "" {
		o.store = fmt.Sprintf("store: { kind: embedded, path: %s }", filepath.Join(dir, "gw.db"))
	}
	if o.auth == "" {
		o.auth = "auth: { keyCacheTTL: 1s }"
	}
	if o.maxBodyBytes == 0 {
		o.maxBodyBytes = 65536
	}
	simPort, gwPort := freePort(t), freePort(t)
	s := &stack{Dir: dir, SimURL: fmt.Sprintf("http://127.0.0.1:%d", simPort), URL: fmt.Sprintf("http://127.0.0.1:%d", gwPort)}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
maxBodyBytes: %d
%s
proxy: { exposeBackend: true, responseHeaderTimeout: 2s }
%s
%s
backends:
  - { name: sim-ptu, url: "%s", provisioned: true, region: swedencentral, auth: { none: true } }
  - { name: sim-paygo, url: "%s", region: swedencentral, auth: { none: true } }
%s
models:
  gpt-4o-mini:
    targets:
      - { backend: sim-paygo, deployment: gpt-4o-mini }
    jobs: { spillToPaygo: true }   # the stack has no provisioned target for it
  o4-mini:
    targets:
      - { backend: sim-paygo, deployment: o4-mini }
  text-embedding-3-small:
    targets:
      - { backend: sim-paygo, deployment: text-embedding-3-small }
%s
`, gwPort, o.maxBodyBytes, o.store, o.auth, o.extraTop, s.SimURL, s.SimURL, o.extraBackends, o.extraModels)
	cfg = strings.ReplaceAll(cfg, "{{SIM}}", s.SimURL) // options may point at the simulator
	cfgPath := filepath.Join(dir, "gateway.yaml")
	s.CfgPath = cfgPath
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	simCfg := filepath.Join(dir, "sim.yaml")
	if err := os.WriteFile(simCfg, []byte(fastSim), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Sim = start(t, dir, nil, "sim", "--listen", fmt.Sprintf("127.0.0.1:%d", simPort), "--config", simCfg)
	keyCmd := exec.Command(handlerBin, "keys", "create", "--config", cfgPath, "--team", "research", "--app", "e2e", "--admin", "--secret-only")
	keyCmd.Env = append(os.Environ(), o.env...)
	keyOut, err := keyCmd.CombinedOutput()
	if err != nil {
		t.Fatalf("keys create: %v\n%s", err, keyOut)
	}
	s.Key = strings.TrimSpace(string(keyOut))
	for _, args := range o.extraKeys {
		kc := exec.Command(handlerBin, append([]string{"keys", "create", "--config", cfgPath, "--secret-only"}, args...)...)
		kc.Env = append(os.Environ(), o.env...)
		out, err := kc.CombinedOutput()
		if err != nil {
			t.Fatalf("keys create %v: %v\n%s", args, err, out)
		}
		s.ExtraKeys = append(s.ExtraKeys, strings.TrimSpace(string(out)))
	}
	// Every stack checks, once its processes have stopped (cleanups run
	// last-registered first), that nothing they printed holds its API keys.
	t.Cleanup(func() {
		lc := newLeakCheck()
		lc.watchStack("stack", s)
		for i, k := range append([]string{s.Key}, s.ExtraKeys...) {
			lc.forbidKey(t, fmt.Sprintf("API key %d", i), k)
		}
		lc.assert(t)
	})
	s.GW = start(t, dir, append([]string{"GATEWAY_CONFIG=" + cfgPath}, o.env...), "serve")
	waitHTTP(t, s.Sim, s.SimURL+"/sim/usage")
	waitHTTP(t, s.GW, s.URL+"/healthz")
	return s
}

// post sends a raw JSON request to the gateway.
func post(t testing.TB, ctx context.Context, url, key, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
