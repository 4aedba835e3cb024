// Command loadbench measures, in one run, what the gateway adds over going
// direct to the simulator and over a bare httputil.ReverseProxy: p50/p99
// latency and requests per second at 64 concurrent clients, time to the
// first streamed chunk at one client, cut streams under concurrent
// streaming load, and the gateway's peak RSS. `make bench` runs it.
//
// The simulator, the bare proxy and the gateway run as separate processes
// (the bare proxy is this binary re-executed with -mode bareproxy); the load
// generator is this process. Everything binds to 127.0.0.1.
//
// Memory: peak RSS is VmHWM; the RssAnon/RssFile split is shown at the end
// of each target's run and as the highest values sampled every 50 ms, with
// the number of requests made (the gateway writes a usage row for each, and
// the embedded store's mmapped pages count as file-backed). -gateway-env
// adds environment to the gateway processes (GOGC, GOMEMLIMIT, GODEBUG) and
// -logs keeps every child's stderr.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	mode := flag.String("mode", "bench", "bench | bareproxy (internal)")
	target := flag.String("target", "", "bareproxy: upstream URL")
	listen := flag.String("listen", "", "bareproxy: listen address")
	handler := flag.String("handler", "bin/handler", "the handler binary")
	duration := flag.Duration("duration", 8*time.Second, "load duration per target")
	conns := flag.Int("conns", 64, "concurrent clients")
	gwEnv := flag.String("gateway-env", "", "extra environment for both gateway processes, space-separated (e.g. \"GOGC=50 GOMEMLIMIT=40MiB\")")
	logs := flag.String("logs", "", "directory to keep the children's stderr in (default: discarded)")
	flag.Parse()
	var err error
	switch *mode {
	case "bareproxy":
		err = bareProxy(*listen, *target)
	default:
		err = bench(*handler, *duration, *conns, strings.Fields(*gwEnv), *logs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

// bareProxy is the baseline: the standard library reverse proxy, nothing else.
func bareProxy(listen, target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }}
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}
	return http.ListenAndServe(listen, rp)
}

// freeAddrs returns n distinct free addresses: the listeners stay open
// until all are chosen, or the kernel may hand out one port twice (the
// second child then fails to listen, and its target silently measures
// whatever took the port).
func freeAddrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		defer l.Close()
		out[i] = l.Addr().String()
	}
	return out
}

type child struct {
	cmd *exec.Cmd
	out bytes.Buffer // stderr, unless kept in log
	log *os.File
}

// startChild starts name with env added; its stderr goes to logFile when
// that is not empty.
func startChild(env []string, logFile, name string, args ...string) (*child, error) {
	c := &child{cmd: exec.Command(name, args...)}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = io.Discard, &c.out
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return nil, err
		}
		c.log, c.cmd.Stderr = f, f
	}
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return c, c.cmd.Start()
}

// alive reports whether the child is still running (an exited child that
// nobody waited for is a zombie without memory lines in its status).
func (c *child) alive() bool { return procStatus(c.cmd.Process.Pid, "VmRSS") > 0 }

// stderr is what the child wrote to stderr, or where it is kept.
func (c *child) stderr() string {
	if c.log != nil {
		return "see " + c.log.Name()
	}
	return strings.TrimSpace(c.out.String())
}

func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	if c.log != nil {
		_ = c.log.Close()
	}
}

// procStatus reads a field of /proc/<pid>/status in MiB: VmHWM is the
// peak resident set, RssAnon the heap and stacks now, RssFile the mapped
// file pages now (the embedded store's mmapped database counts there).
func procStatus(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// memPeak samples a process's RssAnon and RssFile until stop is closed and
// reports the largest values seen: VmHWM says how high the total went, not
// what it was made of.
type memPeak struct {
	anon, file float64
	stop, done chan struct{}
}

func sampleMem(pid int) *memPeak {
	m := &memPeak{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			m.anon = max(m.anon, procStatus(pid, "RssAnon"))
			m.file = max(m.file, procStatus(pid, "RssFile"))
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memPeak) end() { close(m.stop); <-m.done }

func waitReady(url string) error {
	c := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
	}
	return fmt.Errorf("%s not ready", url)
}

const simConfig = `deployments:
  - { name: gpt-4o-mini }
`

type target struct {
	name string
	url  string // base URL; requests go to url + /openai/v1/chat/completions
	key  string
	proc *child
	sent *atomic.Int64 // requests made (the gateway writes a usage row for each)
}

func bench(handler string, duration time.Duration, conns int, gwEnv []string, logs string) error {
	handler, _ = filepath.Abs(handler)
	dir, err := os.MkdirTemp("", "loadbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addrs := freeAddrs(4)
	simAddr, bareAddr, gwAddr, gw1Addr := addrs[0], addrs[1], addrs[2], addrs[3]
	if err := os.WriteFile(filepath.Join(dir, "sim.yaml"), []byte(simConfig), 0o600); err != nil {
		return err
	}
	logFile := func(name string) string {
		if logs == "" {
			return ""
		}
		return filepath.Join(logs, name+".log")
	}
	if logs != "" {
		if err := os.MkdirAll(logs, 0o755); err != nil {
			return err
		}
	}
	sim, err := startChild(nil, logFile("sim"), handler, "sim", "--listen", simAddr, "--config", filepath.Join(dir, "sim.yaml"))
	if err != nil {
		return err
	}
	defer sim.stop()
	self, _ := os.Executable()
	bare, err := startChild(nil, logFile("bareproxy"), self, "-mode", "bareproxy", "-listen", bareAddr, "-target", "http://"+simAddr)
	if err != nil {
		return err
	}
	defer bare.stop()

	gwConfig := func(addr, db string) string {
		return fmt.Sprintf(`listen: %s
store: { kind: embedded, path: %s }
queue: { kind: embedded, path: %s.queue }
ledger: { spoolPath: %s.spool }
backends:
  - { name: sim, url: "http://%s", auth: { none: true } }
models:
  gpt-4o-mini:
    targets:
      - { backend: sim, deployment: gpt-4o-mini }
`, addr, filepath.Join(dir, db), filepath.Join(dir, db), filepath.Join(dir, db), simAddr)
	}
	var targets []target
	targets = append(targets, target{name: "direct to simulator", url: "http://" + simAddr, proc: sim, sent: new(atomic.Int64)},
		target{name: "bare httputil.ReverseProxy", url: "http://" + bareAddr, proc: bare, sent: new(atomic.Int64)})
	for _, g := range []struct{ name, addr, db, procs string }{
		{"gateway (auth+usage)", gwAddr, "gw.db", ""},
		{"gateway, GOMAXPROCS=1", gw1Addr, "gw1.db", "GOMAXPROCS=1"},
	} {
		cfg := filepath.Join(dir, g.db+".yaml")
		if err := os.WriteFile(cfg, []byte(gwConfig(g.addr, g.db)), 0o600); err != nil {
			return err
		}
		key, err := exec.Command(handler, "keys", "create", "--config", cfg, "--team", "bench", "--app", "load", "--secret-only").Output()
		if err != nil {
			return fmt.Errorf("keys create: %w", err)
		}
		env := append([]string{"GATEWAY_LOG_LEVEL=WARN"}, gwEnv...)
		if g.procs != "" {
			env = append(env, g.procs)
		}
		gw, err := startChild(env, logFile(strings.TrimSuffix(g.db, ".db")), handler, "serve", "--config", cfg)
		if err != nil {
			return err
		}
		defer gw.stop()
		targets = append(targets, target{name: g.name, url: "http://" + g.addr, key: strings.TrimSpace(string(key)), proc: gw, sent: new(atomic.Int64)})
	}
	for _, t := range targets {
		err := waitReady(t.url + "/")
		if err == nil && !t.proc.alive() {
			err = errors.New("exited")
		}
		if err != nil {
			return fmt.Errorf("%s: %w; stderr: %s", t.name, err, t.proc.stderr())
		}
	}

	fmt.Printf("loadbench: %d clients, %v per target, %d CPUs, %s", conns, duration, runtime.NumCPU(), runtime.Version())
	if len(gwEnv) > 0 {
		fmt.Printf(", gateway env %s", strings.Join(gwEnv, " "))
	}
	fmt.Print("\n\n")
	body := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Benchmark prompt: say something short."}],"max_tokens":64}`)
	stream := []byte(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Benchmark prompt: stream something."}],"max_tokens":64}`)

	type row struct {
		t               target
		load            loadResult
		ttfc1, p50_1    time.Duration
		cut, streams    int
		rss, anon, file float64
		peak            *memPeak
	}
	var rows []row
	for _, t := range targets {
		pid := t.proc.cmd.Process.Pid
		r := row{t: t, peak: sampleMem(pid)}
		_ = runLoad(t, body, conns, time.Second) // warm-up
		r.load = runLoad(t, body, conns, duration)
		r.p50_1 = sequential(t, body, 300, false)
		r.ttfc1 = sequential(t, stream, 300, true)
		r.cut, r.streams = streamLoad(t, stream, conns, 3*time.Second)
		r.peak.end()
		if !t.proc.alive() {
			return fmt.Errorf("%s exited during the run; stderr: %s", t.name, t.proc.stderr())
		}
		r.rss, r.anon, r.file = procStatus(pid, "VmHWM"), procStatus(pid, "RssAnon"), procStatus(pid, "RssFile")
		rows = append(rows, r)
	}
	direct := rows[0]
	fmt.Printf("%-28s %9s %9s %9s %8s %11s %11s %12s %9s\n", "target (64 conns)", "req/s", "p50", "p99", "×direct", "p50 1 conn", "TTFC 1 conn", "cut streams", "peak RSS")
	for _, r := range rows {
		fmt.Printf("%-28s %9.0f %9s %9s %8.2f %11s %11s %12s %7.1fMi\n", r.t.name, r.load.rps, ms(r.load.p50), ms(r.load.p99),
			r.load.rps/direct.load.rps, ms(r.p50_1), ms(r.ttfc1), fmt.Sprintf("%d/%d", r.cut, r.streams), r.rss)
		fmt.Printf("%-28s now: anon %.1fMi, file-backed %.1fMi; highest sampled: anon %.1fMi, file-backed %.1fMi; %d requests\n",
			"", r.anon, r.file, r.peak.anon, r.peak.file, r.t.sent.Load())
		if r.load.errors > 0 {
			fmt.Printf("  %d errors, first: %s\n", r.load.errors, r.load.firstErr)
		}
	}
	fmt.Println()
	bareRow := rows[1]
	for _, r := range rows[2:] {
		fmt.Printf("%s: added p50 at 1 conn vs direct %+.3f ms (bare proxy %+.3f ms); added time to first chunk %+.3f ms (bare %+.3f ms)\n",
			r.t.name, msf(r.p50_1-direct.p50_1), msf(bareRow.p50_1-direct.p50_1), msf(r.ttfc1-direct.ttfc1), msf(bareRow.ttfc1-direct.ttfc1))
	}
	return nil
}

func ms(d time.Duration) string   { return fmt.Sprintf("%.2fms", msf(d)) }
func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type loadResult struct {
	rps      float64
	p50, p99 time.Duration
	errors   int
	firstErr string
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}}
}

func request(ctx context.Context, t target, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url+"/openai/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	t.sent.Add(1)
	req.Header.Set("Content-Type", "application/json")
	if t.key != "" {
		req.Header.Set("Authorization", "Bearer "+t.key)
	}
	return req, nil
}

// runLoad keeps conns requests in flight for d and reports throughput and latency.
func runLoad(t target, body []byte, conns int, d time.Duration) loadResult {
	c := newClient(conns)
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	var all []time.Duration
	var errs int
	var firstErr string
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			e, fe := 0, ""
			for ctx.Err() == nil {
				req, _ := request(ctx, t, body)
				t0 := time.Now()
				resp, err := c.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if ctx.Err() != nil {
					break
				}
				if err != nil {
					e++
					if fe == "" {
						fe = err.Error()
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			errs += e
			if firstErr == "" {
				firstErr = fe
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := loadResult{rps: float64(len(all)) / el.Seconds(), errors: errs, firstErr: firstErr}
	if len(all) > 0 {
		r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	return r
}

// sequential runs n requests one at a time and returns the median latency,
// or for streams the median time to the first data event.
func sequential(t target, body []byte, n int, firstChunk bool) time.Duration {
	c := newClient(1)
	defer c.CloseIdleConnections()
	var lat []time.Duration
	for i := 0; i < n+20; i++ {
		req, _ := request(context.Background(), t, body)
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			continue
		}
		var d time.Duration
		if firstChunk {
			br := bufio.NewReader(resp.Body)
			for {
				line, err := br.ReadString('\n')
				if strings.HasPrefix(line, "data: ") {
					d = time.Since(t0)
					break
				}
				if err != nil {
					break
				}
			}
			_, _ = io.Copy(io.Discard, br)
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
			d = time.Since(t0)
		}
		resp.Body.Close()
		if i >= 20 && d > 0 { // first 20 warm up
			lat = append(lat, d)
		}
	}
	if len(lat) == 0 {
		return 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)/2]
}

// streamLoad runs concurrent streams for d and counts those that did not
// end with [DONE] (cut streams).
func streamLoad(t target, body []byte, conns int, d time.Duration) (cut, total int) {
	c := newClient(conns)
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(d)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				req, _ := request(context.Background(), t, body)
				resp, err := c.Do(req)
				ok := false
				if err == nil {
					b, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					ok = rerr == nil && resp.StatusCode == 200 && bytes.Contains(b, []byte("data: [DONE]"))
				} else if errors.Is(err, context.Canceled) {
					continue
				}
				mu.Lock()
				total++
				if !ok {
					cut++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return cut, total
}
