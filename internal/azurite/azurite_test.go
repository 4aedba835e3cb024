package azurite

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

func client(t *testing.T, inst *Instance) *aztables.ServiceClient {
	t.Helper()
	opts := &aztables.ClientOptions{ClientOptions: azcore.ClientOptions{
		Retry: policy.RetryOptions{MaxRetries: -1}, // fail fast while stopped
	}}
	svc, err := aztables.NewServiceClientFromConnectionString(inst.ConnectionString(), opts)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return svc
}

func dialable(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func groupAlive(pid int) bool {
	return syscall.Kill(-pid, 0) == nil
}

func TestStartStopRestartKeepsData(t *testing.T) {
	ctx := context.Background()
	start := time.Now()
	inst := Start(t)
	t.Logf("ready in %v on port %d", time.Since(start), inst.Port())

	svc := client(t, inst)
	if _, err := svc.CreateTable(ctx, "keep", nil); err != nil {
		t.Fatalf("create table: %v", err)
	}
	tbl := svc.NewClient("keep")
	if _, err := tbl.AddEntity(ctx, []byte(`{"PartitionKey":"p","RowKey":"r","N":1}`), nil); err != nil {
		t.Fatalf("add: %v", err)
	}

	inst.mu.Lock()
	pid := inst.proc.cmd.Process.Pid
	inst.mu.Unlock()

	stopAt := time.Now()
	inst.Stop()
	t.Logf("stopped in %v", time.Since(stopAt))
	inst.Stop() // idempotent
	if dialable(inst.Port()) {
		t.Fatalf("port %d still accepts connections after Stop", inst.Port())
	}
	if groupAlive(pid) {
		t.Fatalf("process group %d still alive after Stop", pid)
	}
	if _, err := tbl.GetEntity(ctx, "p", "r", nil); err == nil {
		t.Fatalf("GetEntity while stopped: got nil error, want a connection error")
	}

	inst.Restart()
	if _, err := tbl.GetEntity(ctx, "p", "r", nil); err != nil {
		t.Fatalf("GetEntity after Restart: got %v, want the row written before Stop", err)
	}
}

func TestRestartWhileRunning(t *testing.T) {
	inst := Start(t)
	inst.Restart()
	if !dialable(inst.Port()) {
		t.Fatalf("port %d not accepting after Restart", inst.Port())
	}
}

func TestConnectionString(t *testing.T) {
	i := &Instance{port: 12345}
	want := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + AccountKey +
		";TableEndpoint=http://127.0.0.1:12345/devstoreaccount1;"
	if got := i.ConnectionString(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMissingBinary(t *testing.T) {
	t.Setenv(binEnv, "/nonexistent/azurite-table")
	_, err := launch(Table, t.TempDir(), false)
	if err == nil {
		t.Fatal("launch with a missing binary: got nil error")
	}
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("got %v, want ENOENT", err)
	}
}

func TestNotFoundMessageSaysMakeTools(t *testing.T) {
	t.Setenv(binEnv, "")
	t.Chdir(t.TempDir()) // no go.mod above a temp dir
	_, err := findBinary(Table)
	if err == nil {
		t.Skip("an azurite-table binary is installed above the temp dir")
	}
	if !strings.Contains(err.Error(), "make tools") {
		t.Errorf("got %q, want it to mention make tools", err)
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	// A "binary" that prints and exits at once must fail fast with its output.
	dir := t.TempDir()
	bin := dir + "/fake-azurite"
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho boom-from-fake >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(binEnv, bin)
	start := time.Now()
	_, err := launch(Table, t.TempDir(), false)
	if err == nil {
		t.Fatal("got nil error, want start failure")
	}
	if !strings.Contains(err.Error(), "boom-from-fake") {
		t.Errorf("got %q, want it to include the log", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("failure took %v, want it detected as soon as the process exits", d)
	}
}

func TestSharedStartsOnceAndCloses(t *testing.T) {
	var s Shared
	a := s.Start(t)
	b := s.Start(t)
	if a != b {
		t.Fatalf("second Start: got a new instance %p, want %p", b, a)
	}
	if !dialable(a.Port()) {
		t.Fatalf("port %d not accepting", a.Port())
	}
	a.mu.Lock()
	pid := a.proc.cmd.Process.Pid
	a.mu.Unlock()
	s.Close()
	if dialable(a.Port()) || groupAlive(pid) {
		t.Errorf("after Close: port open %v, group alive %v; want neither", dialable(a.Port()), groupAlive(pid))
	}
	s.Close() // idempotent
}

func TestBlobServiceStartsBesideTable(t *testing.T) {
	inst := StartService(t, Blob)
	if !dialable(inst.Port()) {
		t.Fatalf("blob port %d not accepting", inst.Port())
	}
	if cs := inst.ConnectionString(); !strings.Contains(cs, "BlobEndpoint="+inst.BlobURL()) || strings.Contains(cs, "TableEndpoint") {
		t.Errorf("connection string %q: want BlobEndpoint=%s only", cs, inst.BlobURL())
	}
}

func TestBlobBinaryBesideTableBinary(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"azurite-table", "azurite-blob"} {
		if err := os.WriteFile(dir+"/"+n, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(binEnv, dir+"/azurite-table")
	t.Setenv(blobBinEnv, "")
	got, err := findBinary(Blob)
	if err != nil || got != dir+"/azurite-blob" {
		t.Errorf("findBinary(Blob): got %q, %v; want %s/azurite-blob", got, err, dir)
	}
}
