package embedded_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/queue"
	"github.com/foundry-gateway/gateway/internal/queue/embedded"
	"github.com/foundry-gateway/gateway/internal/queue/queuetest"
)

const (
	testLock = 30 * time.Second
	testMax  = 4
)

func open(t *testing.T, path string, clock embedded.Clock) *embedded.Queue {
	t.Helper()
	q, err := embedded.Open(path, embedded.Options{LockDuration: testLock, MaxDeliveryCount: testMax, Clock: clock})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return q
}

// TestContract runs the suite on a fake clock: no case sleeps.
func TestContract(t *testing.T) {
	clock := queuetest.NewClock()
	paths := map[queue.Queue]string{}
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		path := filepath.Join(t.TempDir(), "queue.db")
		q := open(t, path, clock)
		paths[q] = path
		return q
	}, queuetest.Caps{
		LockDuration:     testLock,
		MaxDeliveryCount: testMax,
		Now:              clock.Now,
		Advance:          clock.Advance,
		Reopen: func(t *testing.T, q queue.Queue) queue.Queue {
			t.Helper()
			if err := q.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return open(t, paths[q], clock)
		},
	})
}

func TestOpenDefaults(t *testing.T) {
	q, err := embedded.Open(filepath.Join(t.TempDir(), "sub", "dir", "queue.db"), embedded.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer q.Close()
	if got, want := q.LockDuration(), embedded.DefaultLockDuration; got != want {
		t.Errorf("LockDuration: got %v, want %v", got, want)
	}
	if _, err := embedded.Open(filepath.Join(t.TempDir(), "q.db"), embedded.Options{LockDuration: -time.Second}); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("Open with a negative lock: got %v, want ErrInvalid", err)
	}
}

func contextBackground() context.Context { return context.Background() }

// TestCloseWakesReceive: a Receive waiting for messages ends with ErrClosed
// when the queue is closed.
func TestCloseWakesReceive(t *testing.T) {
	q := open(t, filepath.Join(t.TempDir(), "queue.db"), nil)
	errc := make(chan error, 1)
	go func() {
		_, err := q.Receive(t.Context(), 1, time.Minute)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, queue.ErrClosed) {
			t.Errorf("waiting Receive: got %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("waiting Receive did not return after Close")
	}
}

// TestReceiveWakesOnSend: a waiting Receive returns as soon as a message is
// sent, long before its wait ends.
func TestReceiveWakesOnSend(t *testing.T) {
	q := open(t, filepath.Join(t.TempDir(), "queue.db"), nil)
	defer q.Close()
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = q.Send(context.Background(), queue.Outgoing{ID: "late"})
	}()
	start := time.Now()
	msgs, err := q.Receive(t.Context(), 1, 30*time.Second)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Receive: got %d messages, %v, want 1", len(msgs), err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Receive took %v, want it woken by the Send", d)
	}
}

// TestDuplicateID: an ID still in the queue is dropped; once completed it
// may be used again.
func TestDuplicateID(t *testing.T) {
	q := open(t, filepath.Join(t.TempDir(), "queue.db"), queuetest.NewClock())
	defer q.Close()
	ctx := t.Context()
	for _, body := range []string{"first", "second"} {
		if err := q.Send(ctx, queue.Outgoing{ID: "job-1", Body: []byte(body)}); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	msgs, err := q.Receive(ctx, 10, 0)
	if err != nil || len(msgs) != 1 || string(msgs[0].Body) != "first" {
		t.Fatalf("Receive: got %d messages, %v, want only the first", len(msgs), err)
	}
	if err := q.Complete(ctx, msgs[0]); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if err := q.Send(ctx, queue.Outgoing{ID: "job-1", Body: []byte("third")}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if msgs, err := q.Receive(ctx, 10, 0); err != nil || len(msgs) != 1 || string(msgs[0].Body) != "third" {
		t.Fatalf("Receive after Complete: got %d messages, %v, want the third", len(msgs), err)
	}
}
