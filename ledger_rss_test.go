//go:build !race

// The race detector multiplies memory (shadow memory, larger heaps), so the
// bound is measured without it: `make test` runs this file in a separate
// `go test` without -race.

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/ledger"
	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/policy"
	"github.com/foundry-gateway/gateway/internal/proxy"
)

// The usage ledger's memory bound, measured as the RSS of a running
// gateway process (issue #15).
//
// TestGatewayLedgerRSS runs a gateway in a child process (this test binary,
// re-executed, running build() as `handler serve` does: the embedded store,
// the ledger Writer with its flush loop, the HTTP server and its timers)
// and drives it over stdin: record N synthetic events of one day straight
// into the gateway's ledger Writer, run the rollup timer, read the report
// through GET /admin/usage, then rebuild the day from its events (what
// `handler usage rebuild` runs, a scan of every event). The parent samples the child's
// /proc/<pid>/status (VmRSS, RssAnon, RssFile) every 10 ms and
// /proc/<pid>/smaps (the store file's map) after each phase.
//
// Bound: every phase's peak VmRSS stays under 64 MiB above the idle
// baseline (the gateway listening, before the first event), and the store
// file's resident map stays under its release budget plus slack whatever
// the file's size. `make test` records 60,000 events in three thirds and also
// checks the slope: the rise of the RssFile floor from the second third to
// the last, per event, would add less than 64 MiB over 1,000,000 events. `make ledger-scale` records
// 1,000,000 (FGW_LEDGER_EVENTS). FGW_LEDGER_STORE=azurite runs the same on
// Table Storage (Azurite, AZURITE_TABLE_BIN), the cloud path, which has no
// memory-mapped file.

const (
	rssBound = 64 << 20
	// mapBound is the store map's resident ceiling: the meter's release
	// budget (boltfile.DefaultReleaseBytes, 16 MiB) plus what is read
	// between two checks of the RSS, rounded up.
	mapBound = 24 << 20
)

func TestGatewayLedgerRSS(t *testing.T) {
	if os.Getenv("FGW_RSS_CHILD") != "" {
		rssChild(t)
		return
	}
	if testing.Short() {
		t.Skip("-short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	n := 60_000
	if v := os.Getenv("FGW_LEDGER_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 3 {
			t.Fatalf("FGW_LEDGER_EVENTS=%q: want a count >= 3", v)
		}
	}
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "gw.db")
	storeCfg := `store: { kind: embedded, path: ` + dbPath + ` }`
	var env []string
	if os.Getenv("FGW_LEDGER_STORE") == "azurite" {
		// The cloud path: Table Storage (Azurite), no memory-mapped file.
		if os.Getenv("AZURITE_TABLE_BIN") == "" {
			t.Skip("FGW_LEDGER_STORE=azurite needs AZURITE_TABLE_BIN")
		}
		az := azurite.Start(t)
		storeCfg = `store: { kind: azure-tables, connection: GatewayTables }`
		env = append(env, "GatewayTables="+az.ConnectionString())
	}
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte(`listen: 127.0.0.1:`+strconv.Itoa(freeTCPPort(t))+`
`+storeCfg+`
queue: { kind: embedded, path: `+filepath.Join(dir, "q.db")+` }
timers: { drain: 0s, rollup: 0s }
backends:
  - { name: sim, url: "http://127.0.0.1:1", auth: { none: true } }
models:
  gpt-4o-mini: { targets: [ { backend: sim } ] }
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestGatewayLedgerRSS$", "-test.v", "-test.timeout=0") // the parent's timeout bounds it: the child ends when its stdin closes
	cmd.Env = append(append(os.Environ(), env...), "FGW_RSS_CHILD=1", "GATEWAY_CONFIG="+cfg, "FGW_LEDGER_EVENTS="+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	out := bufio.NewScanner(stdout)
	var childLog []string
	// await reads the child's lines until one starts with "ok " (returned)
	// or "fail " (the test fails).
	await := func(step string) string {
		for out.Scan() {
			line := out.Text()
			switch {
			case strings.HasPrefix(line, "ok "):
				return strings.TrimPrefix(line, "ok ")
			case strings.HasPrefix(line, "fail "):
				t.Fatalf("%s: %s", step, line)
			default:
				childLog = append(childLog, line)
			}
		}
		t.Fatalf("%s: the child ended: %v\n%s\n%s", step, out.Err(), strings.Join(childLog, "\n"), tail(stderr.String(), 2000))
		return ""
	}
	await("start")
	time.Sleep(200 * time.Millisecond)
	idle := readStatus(t, pid)
	t.Logf("idle gateway: VmRSS %.1f MiB (RssAnon %.1f, RssFile %.1f)", mib(idle.rss), mib(idle.anon), mib(idle.file))

	// phase sends cmd and samples the child's RSS until it answers.
	type result struct {
		peak     status
		fileMin  uint64 // lowest RssFile sample
		mapAfter int64
		answer   string
	}
	phase := func(cmdLine string) result {
		var r result
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				st := readStatus(t, pid)
				r.peak = r.peak.max(st)
				if st.file > 0 && (r.fileMin == 0 || st.file < r.fileMin) {
					r.fileMin = st.file
				}
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
		fmt.Fprintln(stdin, cmdLine)
		r.answer = await(cmdLine)
		close(stop)
		wg.Wait()
		r.peak = r.peak.max(readStatus(t, pid))
		r.mapAfter = mappedRSS(t, pid, dbPath)
		return r
	}
	third := n / 3
	rec1 := phase("record " + strconv.Itoa(third))
	rec2 := phase("record " + strconv.Itoa(third))
	rec3 := phase("record " + strconv.Itoa(n-2*third))
	roll := phase("rollup")
	rep := phase("report")
	reb := phase("rebuild")
	fmt.Fprintln(stdin, "quit")

	var want, got sums
	fmt.Sscan(rec3.answer, &want.events, &want.prompt, &want.completion, &want.cost)
	fmt.Sscan(rep.answer, &got.events, &got.prompt, &got.completion, &got.cost)
	if got != want || want.events != int64(n) {
		t.Errorf("report totals %+v, want %+v (%d events)", got, want, n)
	}
	if reb.answer != fmt.Sprintf("%d events, 0 corrections", n) {
		t.Errorf("rebuild: %s, want %d events and no correction", reb.answer, n)
	}
	var fileSize int64
	if fi, err := os.Stat(dbPath); err == nil {
		fileSize = fi.Size()
	}
	for _, p := range []struct {
		name string
		r    result
	}{{"record 1st third", rec1}, {"record 2nd third", rec2}, {"record 3rd third", rec3}, {"rollup", roll}, {"report", rep}, {"rebuild", reb}} {
		above := p.r.peak.rss - idle.rss
		t.Logf("%-16s peak VmRSS %6.1f MiB (+%5.1f above idle; RssAnon %5.1f, RssFile %5.1f); store map resident after: %5.1f MiB",
			p.name, mib(p.r.peak.rss), mib(above), mib(p.r.peak.anon), mib(p.r.peak.file), mib(p.r.mapAfter))
		if above > rssBound {
			t.Errorf("%s: peak VmRSS %.1f MiB above the idle gateway, want under 64 MiB", p.name, mib(above))
		}
		if p.r.mapAfter > mapBound {
			t.Errorf("%s: %.1f MiB of the store file's map resident, want under %d MiB", p.name, mib(p.r.mapAfter), mapBound>>20)
		}
	}
	// The slope: how much the floor of the file-backed RSS (where the
	// store's map is counted) rose from the second third of the events to
	// the last, per event, scaled to 1,000,000 events, stays under the
	// bound. The first third warms up. Without releases the map only grows,
	// so its floor in one third is its size at the start of that third: it
	// rises with the file, ~800 bytes per event. With releases the map drops
	// back to ~0 many times in every third (one 200-row commit maps several
	// MiB), so the floor stays put. Floors, not peaks or means: the released
	// map is a sawtooth of 16 MiB, as large as what a scaled-down run adds.
	grew := int64(rec3.fileMin) - int64(rec2.fileMin)
	perMillion := float64(grew) / float64(n-2*third) * 1e6
	t.Logf("%d events, file %.1f MiB; lowest RssFile %.1f MiB (2nd third), %.1f MiB (3rd third): %.1f MiB per 1,000,000 events",
		n, mib(fileSize), mib(rec2.fileMin), mib(rec3.fileMin), perMillion/(1<<20))
	if perMillion > rssBound {
		t.Errorf("RssFile grows %.1f MiB per 1,000,000 events, want under 64 MiB", perMillion/(1<<20))
	}
}

type sums struct{ events, prompt, completion, cost int64 }

// status is the memory part of /proc/<pid>/status, in bytes.
type status struct{ rss, anon, file uint64 }

func (s status) max(o status) status {
	return status{max(s.rss, o.rss), max(s.anon, o.anon), max(s.file, o.file)}
}

func readStatus(t *testing.T, pid int) status {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return status{}
	}
	var s status
	for _, line := range strings.Split(string(b), "\n") {
		var kb uint64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			fmt.Sscanf(line, "VmRSS: %d kB", &kb)
			s.rss = kb << 10
		case strings.HasPrefix(line, "RssAnon:"):
			fmt.Sscanf(line, "RssAnon: %d kB", &kb)
			s.anon = kb << 10
		case strings.HasPrefix(line, "RssFile:"):
			fmt.Sscanf(line, "RssFile: %d kB", &kb)
			s.file = kb << 10
		}
	}
	return s
}

// mappedRSS is the resident size of pid's maps of path (/proc/pid/smaps).
func mappedRSS(t *testing.T, pid int, path string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0
	}
	var total int64
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		fs := strings.Fields(line)
		if len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			in = len(fs) >= 6 && fs[5] == path
			continue
		}
		var kb int64
		if in && strings.HasPrefix(line, "Rss:") {
			fmt.Sscanf(line, "Rss: %d kB", &kb)
			total += kb << 10
		}
	}
	return total
}

func mib[T int64 | uint64 | float64](b T) float64 { return float64(b) / (1 << 20) }

func freeTCPPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// rssChild is the gateway side: build() as `handler serve` does, serve,
// run the workers, then obey "record N", "rollup", "report", "quit" on
// stdin, answering "ok ..." on stdout.
func rssChild(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	say := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	c, err := config.LoadFile(os.Getenv("GATEWAY_CONFIG"), os.Getenv)
	if err != nil {
		say("fail config: %v", err)
		return
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	a, err := build(ctx, c, log, proxy.NewTransport())
	if err != nil {
		say("fail build: %v", err)
		return
	}
	defer a.store.Close()
	defer a.queue.Close()
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		say("fail listen: %v", err)
		return
	}
	srv := &http.Server{Handler: a.handler}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	var wg sync.WaitGroup
	wctx, stop := context.WithCancel(ctx)
	for _, run := range a.workers {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(wctx) }()
	}
	defer func() { stop(); wg.Wait() }()
	tbl, err := table(ctx, a.store, c, auth.Table)
	if err != nil {
		say("fail keys table: %v", err)
		return
	}
	_, secret, err := auth.NewKeys(tbl, nil).Create(ctx, auth.Spec{Team: "ops", App: "finance", Scope: policy.Scope{Admin: true}})
	if err != nil {
		say("fail admin key: %v", err)
		return
	}
	runtime.GC()
	debug.FreeOSMemory()
	say("ok ready")

	day := time.Now().UTC().Truncate(24 * time.Hour)
	teams := []string{"research", "sales", "ops", "finance"}
	models := []string{"gpt-4o", "gpt-4o-mini", "o4-mini"}
	var total sums
	next := 0
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch f[0] {
		case "record":
			k, _ := strconv.Atoi(f[1])
			for j := 0; j < k; j++ {
				i := next
				next++
				// Request ids in no order (random): the worst case for the store's
				// map; the gateway's own ids are time-ordered, so its rows append.
				e := ledger.Event{Time: day.Add(time.Duration(i) * time.Millisecond % (24 * time.Hour)),
					RequestID: fmt.Sprintf("%016x", uint64(i)*0x9E3779B97F4A7C15), KeyID: "k1",
					Team: teams[i%4], App: "app" + strconv.Itoa(i%5), Model: models[i%3],
					Class: []ledger.Class{ledger.ClassInteractive, ledger.ClassBatch}[i/7%2], Status: 200,
					PromptTokens: int64(10 + i%7), CompletionTokens: int64(5 + i%11), Currency: "USD", UsageSource: ledger.SourceReported}
				e.TotalTokens = e.PromptTokens + e.CompletionTokens
				e.Cost = money.Nanos(e.TotalTokens) * 1000
				total.events++
				total.prompt += e.PromptTokens
				total.completion += e.CompletionTokens
				total.cost += int64(e.Cost)
				a.usage.Record(ctx, e)
				if next%5_000 == 0 { // keep pace with the Writer's own flushes, as request traffic would
					if err := a.usage.Flush(ctx); err != nil {
						say("fail flush: %v", err)
						return
					}
				}
			}
			if err := a.usage.Flush(ctx); err != nil {
				say("fail flush: %v", err)
				return
			}
			say("ok %d %d %d %d", total.events, total.prompt, total.completion, total.cost)
		case "rollup":
			msgs, err := a.timers["rollup"](ctx)
			if err != nil {
				say("fail rollup: %v", err)
				return
			}
			say("ok %s", strings.Join(msgs, "; "))
		case "report":
			d := day.Format("2006-01-02")
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
				"http://"+c.Listen+"/admin/usage?from="+d+"&to="+d+"&by=team,app,model,class&format=json", nil)
			req.Header.Set("Authorization", "Bearer "+secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				say("fail report: %v", err)
				return
			}
			var rep ledger.Report
			err = json.NewDecoder(resp.Body).Decode(&rep)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				say("fail report: %v %v", resp.Status, err)
				return
			}
			var got sums
			for _, r := range rep.Rows {
				got.events += r.Requests
				got.prompt += r.PromptTokens
				got.completion += r.CompletionTokens
				got.cost += int64(r.Cost)
			}
			say("ok %d %d %d %d", got.events, got.prompt, got.completion, got.cost)
		case "rebuild": // what `handler usage rebuild --day D` runs, here in the gateway's process
			lt, err := ledger.OpenTables(ctx, a.store, c.Store.TablePrefix)
			if err != nil {
				say("fail rebuild: %v", err)
				return
			}
			res, err := ledger.NewDaily(lt, nil).Rebuild(ctx, day)
			if err != nil {
				say("fail rebuild: %v", err)
				return
			}
			say("ok %d events, %d corrections", res.Events, res.Corrections)
		case "quit":
			return
		}
	}
}
