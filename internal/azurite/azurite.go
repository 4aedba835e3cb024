package azurite

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// AccountKey is the well-known key of the Azurite development account
// devstoreaccount1. It is public and grants nothing outside the emulator.
const AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

// AccountName is the Azurite development account.
const AccountName = "devstoreaccount1"

const (
	// readyTimeout bounds the wait for the port to accept connections. It is
	// ready in about 1.5 s on an idle machine, but loading its node modules
	// took over 15 s on a 2-core machine with parallel test binaries, and a
	// Restart took 26 s (twice more than 30 s) at a load average of 24 on 2
	// cores. The wait ends as soon as the port answers, so the bound costs
	// time only when Azurite is dead: it must sit well above the slowest
	// start seen, and well below the test binary's timeout.
	readyTimeout = 90 * time.Second
	// stopTimeout bounds the graceful stop (SIGINT, which makes Azurite save
	// its data); it takes about 1.7 s. After it the group is killed.
	stopTimeout = 5 * time.Second
	// binEnv names the variable that overrides the table binary's location.
	binEnv = "AZURITE_TABLE_BIN"
	// blobBinEnv overrides the blob binary's location; without it the blob
	// binary is looked for beside the table binary.
	blobBinEnv = "AZURITE_BLOB_BIN"
)

// Service is an Azurite service: each runs as its own binary of the azurite
// npm package (azurite-table, azurite-blob).
type Service string

// Services tests can start.
const (
	// Table is azurite-table, the Table Storage emulator (the default).
	Table Service = "table"
	// Blob is azurite-blob, the Blob Storage emulator.
	Blob Service = "blob"
)

func (s Service) orTable() Service {
	if s == "" {
		return Table
	}
	return s
}

// Instance is one azurite-table or azurite-blob process. Its methods are
// safe for concurrent use.
type Instance struct {
	service           Service
	bin, dir, logPath string
	port              int
	// inMemory keeps data only in memory (--inMemoryPersistence): faster for
	// a shared instance that is never restarted.
	inMemory bool
	// fatalf reports an error from Restart: t.Fatalf for Start, a panic for
	// a Shared instance (which has no single test to fail).
	fatalf func(format string, args ...any)

	mu   sync.Mutex
	proc *process // nil when stopped
}

// process is one run of the binary.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returned
	log    *os.File
}

// Start starts azurite-table for the test, waits until it accepts
// connections, and stops it when the test ends. Data is kept in t.TempDir(),
// so Restart keeps it. It fails the test when the binary is missing or does
// not start; it skips only in -short mode (`make test-unit`). For many tests
// of one package, use a Shared instance instead.
func Start(t testing.TB) *Instance {
	t.Helper()
	return StartService(t, Table)
}

// StartService is Start for the given service (Table or Blob).
func StartService(t testing.TB, svc Service) *Instance {
	t.Helper()
	skipShort(t)
	inst, err := launch(svc.orTable(), t.TempDir(), false)
	if err != nil {
		t.Fatalf("azurite: %v", err)
	}
	inst.fatalf = t.Fatalf
	t.Cleanup(inst.kill)
	return inst
}

// Shared is one instance shared by the tests of a package, started by the
// first test that asks for it (so a -run that selects no store test starts
// nothing) and stopped by Run after the last test. It keeps data in memory
// only (--inMemoryPersistence), which is much faster when tests write
// megabytes; tests that Stop or Restart Azurite must Start their own
// instance. Use it from TestMain:
//
//	var az azurite.Shared
//
//	func TestMain(m *testing.M) { os.Exit(az.Run(m)) }
//
//	func TestX(t *testing.T) { cs := az.Start(t).ConnectionString() ... }
//
// The zero value is ready to use and runs the table service; set Service to
// Blob for the blob service.
type Shared struct {
	// Service to run; "" means Table. Set it before the first Start.
	Service Service

	mu   sync.Mutex
	inst *Instance
	dir  string
	err  error // a failed start is not retried by every test
}

// Start returns the shared instance, starting it on first use. Like the
// package-level Start it fails the test when Azurite cannot start, and skips
// it only in -short mode.
func (s *Shared) Start(t testing.TB) *Instance {
	t.Helper()
	skipShort(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst == nil && s.err == nil {
		s.dir, s.err = os.MkdirTemp("", "azurite-")
		if s.err == nil {
			s.inst, s.err = launch(s.Service.orTable(), s.dir, true)
		}
		if s.inst != nil {
			s.inst.fatalf = func(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
		}
	}
	if s.err != nil {
		t.Fatalf("azurite: %v", s.err)
	}
	return s.inst
}

// Run runs the tests, then stops the shared instance and removes its
// directory. It returns m.Run's exit code.
func (s *Shared) Run(m *testing.M) int {
	code := m.Run()
	s.Close()
	return code
}

// Close stops the shared instance, if it was started, and removes its
// directory. Run calls it.
func (s *Shared) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst != nil {
		s.inst.kill()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir) // a temp dir; nothing to do if it fails
	}
	s.inst, s.dir = nil, ""
}

// skipShort skips t in -short mode, which `make test-unit` uses to run
// without Azurite. Without -short a missing Azurite fails the test.
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("azurite: needs the Azurite emulator; skipped in -short mode")
	}
}

// ConnectionString is the explicit development connection string (the Go SDK
// does not accept UseDevelopmentStorage=true). It names the endpoint of the
// instance's service only (TableEndpoint or BlobEndpoint).
func (i *Instance) ConnectionString() string {
	endpoint := "TableEndpoint"
	if i.service == Blob {
		endpoint = "BlobEndpoint"
	}
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;%s=%s;",
		AccountName, AccountKey, endpoint, i.URL())
}

// URL is the service endpoint, http://127.0.0.1:<port>/devstoreaccount1.
func (i *Instance) URL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/%s", i.port, AccountName)
}

// TableURL is the table service endpoint (URL of a Table instance).
func (i *Instance) TableURL() string { return i.URL() }

// BlobURL is the blob service endpoint (URL of a Blob instance).
func (i *Instance) BlobURL() string { return i.URL() }

// Port is the TCP port Azurite listens on; Restart keeps it.
func (i *Instance) Port() int { return i.port }

// Stop stops Azurite, for outage tests. It asks it to shut down so that
// its data is saved for Restart, and kills its process group if it takes
// longer than a few seconds. Stopping a stopped instance does nothing.
func (i *Instance) Stop() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.proc != nil {
		i.proc.stop(stopTimeout)
		i.proc = nil
	}
}

// Restart starts Azurite again on the same port and data directory and
// waits until it accepts connections. A running instance is stopped first.
func (i *Instance) Restart() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.proc != nil {
		i.proc.stop(stopTimeout)
		i.proc = nil
	}
	p, err := i.run()
	if err != nil {
		i.fatalf("azurite: restart: %v", err)
		return
	}
	i.proc = p
}

// kill ends the process group at once, without saving (test cleanup).
func (i *Instance) kill() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.proc != nil {
		i.proc.stop(0)
		i.proc = nil
	}
}

// launch finds the binary, picks a free port and starts Azurite with its log
// and (unless inMemory) its data in dir.
func launch(svc Service, dir string, inMemory bool) (*Instance, error) {
	bin, err := findBinary(svc)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	i := &Instance{service: svc, bin: bin, dir: dir, logPath: filepath.Join(dir, "azurite.log"), port: port, inMemory: inMemory}
	p, err := i.run()
	if err != nil {
		return nil, err
	}
	i.proc = p
	return i, nil
}

// run starts the binary and waits until its port accepts connections.
func (i *Instance) run() (*process, error) {
	log, err := os.OpenFile(i.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	svc := string(i.service)
	args := []string{
		"--" + svc + "Host", "127.0.0.1",
		"--" + svc + "Port", strconv.Itoa(i.port),
		"--skipApiVersionCheck",
		"--disableTelemetry",
		"--silent",
	}
	if i.inMemory {
		args = append(args, "--inMemoryPersistence")
	} else {
		args = append(args, "--location", i.dir)
	}
	cmd := exec.Command(i.bin, args...)
	cmd.Dir = i.dir
	cmd.Stdout = log
	cmd.Stderr = log
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", i.bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{}), log: log}
	go func() {
		_ = cmd.Wait() // the exit status of a killed emulator says nothing
		close(p.exited)
	}()
	if err := i.waitReady(p); err != nil {
		p.stop(0)
		out, _ := os.ReadFile(i.logPath)
		return nil, fmt.Errorf("%w\n--- %s ---\n%s", err, i.logPath, out)
	}
	return p, nil
}

// waitReady polls the port until it accepts a connection, the process exits,
// or readyTimeout passes.
func (i *Instance) waitReady(p *process) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(i.port))
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept connections on %s within %v: %w", i.bin, addr, readyTimeout, err)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before accepting connections: %v", i.bin, p.cmd.ProcessState)
		case <-tick.C:
		}
	}
}

// stop interrupts the process group, waits up to grace for the process to
// exit, then kills the group. grace 0 kills at once.
func (p *process) stop(grace time.Duration) {
	defer p.log.Close()
	if grace > 0 {
		interruptGroup(p.cmd)
		select {
		case <-p.exited:
			// The leader is gone; still kill stragglers of the group.
			killGroup(p.cmd)
			return
		case <-time.After(grace):
		}
	}
	killGroup(p.cmd)
	<-p.exited
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before Azurite binds it; on this single-user test machine that
// has not been seen.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// findBinary returns the binary of svc: $AZURITE_TABLE_BIN for the table
// service; for the blob service $AZURITE_BLOB_BIN, else azurite-blob beside
// $AZURITE_TABLE_BIN. Else the first .tools/node_modules/.bin/azurite-<svc>
// found next to a go.mod while walking up from the working directory.
func findBinary(svc Service) (string, error) {
	name := "azurite-" + string(svc)
	env := binEnv
	if svc == Blob {
		env = blobBinEnv
		if os.Getenv(blobBinEnv) == "" && os.Getenv(binEnv) != "" {
			bin := filepath.Join(filepath.Dir(os.Getenv(binEnv)), name)
			if _, err := os.Stat(bin); err == nil {
				return bin, nil
			}
		}
	}
	if bin := os.Getenv(env); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%s=%s: %w", env, bin, err)
		}
		return bin, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find %s: %w", name, err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			bin := filepath.Join(dir, ".tools", "node_modules", ".bin", name)
			if _, err := os.Stat(bin); err == nil {
				return bin, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New(name + " not found: run `make tools` (npm install --prefix .tools --save-exact azurite@3.37.0) or set " + env)
}
