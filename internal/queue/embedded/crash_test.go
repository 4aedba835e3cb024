package embedded_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/queue"
	"github.com/foundry-gateway/gateway/internal/queue/embedded"
	"github.com/foundry-gateway/gateway/internal/queue/queuetest"
)

// crashEnv makes the test binary act as the crashing process.
const crashEnv = "EMBEDDED_QUEUE_CRASH_PATH"

// TestCrash kills (SIGKILL) a process that has sent five messages and holds
// the locks of two of them, then checks from this process that nothing was
// lost: three are due at once, the two locked ones come back after the lock
// expires with DeliveryCount 2.
func TestCrash(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashHelper(path)
		return
	}
	path := filepath.Join(t.TempDir(), "queue.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrash$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper: got %v, want it killed by SIGKILL; output:\n%s", err, out)
	}

	clock := queuetest.NewClock() // the helper used the real clock; move ours past its locks
	clock.Advance(time.Since(clock.Now()))
	q := open(t, path, clock)
	defer q.Close()
	msgs, err := q.Receive(t.Context(), 10, 0)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if len(msgs) != 3 {
		t.Fatalf("after the crash: got %d due messages, want 3", len(msgs))
	}
	for _, m := range msgs {
		if m.DeliveryCount != 1 {
			t.Errorf("%s: DeliveryCount got %d, want 1", m.ID, m.DeliveryCount)
		}
		if err := q.Complete(t.Context(), m); err != nil {
			t.Fatalf("Complete: %v", err)
		}
	}
	clock.Advance(testLock + time.Second)
	msgs, err = q.Receive(t.Context(), 10, 0)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("after the lock expiry: got %d messages, %v, want 2", len(msgs), err)
	}
	for _, m := range msgs {
		if m.DeliveryCount != 2 {
			t.Errorf("%s: DeliveryCount got %d, want 2", m.ID, m.DeliveryCount)
		}
	}
}

// crashHelper runs in the child: send, lock two, die without Close.
func crashHelper(path string) {
	q, err := embedded.Open(path, embedded.Options{LockDuration: testLock, MaxDeliveryCount: testMax})
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	ctx := contextBackground()
	for i := range 5 {
		if err := q.Send(ctx, queue.Outgoing{ID: fmt.Sprintf("crash-%d", i), Body: []byte("x")}); err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
	}
	if msgs, err := q.Receive(ctx, 2, 0); err != nil || len(msgs) != 2 {
		fmt.Println(len(msgs), err)
		os.Exit(2)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
