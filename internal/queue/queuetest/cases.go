package queuetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/blob"
	"github.com/foundry-gateway/gateway/internal/queue"
	"github.com/foundry-gateway/gateway/internal/queue/claim"
)

// checkSame fails unless m carries what o was sent with.
func checkSame(t *testing.T, m *queue.Message, o queue.Outgoing) {
	t.Helper()
	if m.ID != o.ID {
		t.Fatalf("ID: got %q, want %q", m.ID, o.ID)
	}
	if !bytes.Equal(m.Body, o.Body) {
		t.Errorf("Body: got %q, want %q", m.Body, o.Body)
	}
	if len(m.Properties) != len(o.Properties) || (len(o.Properties) > 0 && !maps.Equal(m.Properties, o.Properties)) {
		t.Errorf("Properties: got %v, want %v", m.Properties, o.Properties)
	}
}

func checkDelivery(t *testing.T, m *queue.Message, want int) {
	t.Helper()
	if m.DeliveryCount != want {
		t.Errorf("DeliveryCount of %s: got %d, want %d", m.ID, m.DeliveryCount, want)
	}
}

func testSendReceiveComplete(t *testing.T, h *harness) {
	o := h.sendNew(t, `{"job":"1"}`, map[string]string{"team": "research", "kind": "chat"})
	before := h.caps.Now()
	m := h.receiveOne(t)
	checkSame(t, m, o)
	checkDelivery(t, m, 1)
	if m.EnqueuedAt.IsZero() {
		t.Errorf("EnqueuedAt: got zero, want the send time")
	}
	if !m.LockedUntil.After(before) {
		t.Errorf("LockedUntil: got %v, want after %v", m.LockedUntil, before)
	}
	if m.DeadLetterReason != "" {
		t.Errorf("DeadLetterReason: got %q, want empty", m.DeadLetterReason)
	}
	h.complete(t, m)
	if err := h.q.Complete(t.Context(), m); !errors.Is(err, queue.ErrLockLost) {
		t.Errorf("second Complete: got %v, want ErrLockLost", err)
	}
	h.expectNone(t, "after Complete")
}

func testNoProperties(t *testing.T, h *harness) {
	o := queue.Outgoing{ID: h.id()} // no body, no properties
	h.send(t, o)
	m := h.receiveOne(t)
	if m.ID != o.ID || len(m.Body) != 0 || len(m.Properties) != 0 {
		t.Errorf("got ID %q, body %q, properties %v, want %q and nothing else", m.ID, m.Body, m.Properties, o.ID)
	}
	h.complete(t, m)
}

func testPeekLockExclusive(t *testing.T, h *harness) {
	o := h.sendNew(t, "one", nil)
	m := h.receiveOne(t)
	checkSame(t, m, o)
	h.expectNone(t, "while the lock holds")
	h.complete(t, m)
}

func testLockExpiryRedelivers(t *testing.T, h *harness) {
	o := h.sendNew(t, "expire", map[string]string{"a": "b"})
	m := h.receiveOne(t)
	checkDelivery(t, m, 1)
	h.sleep(h.caps.LockDuration + h.lockMargin())
	m2 := h.receiveOne(t)
	checkSame(t, m2, o)
	checkDelivery(t, m2, 2)
	h.complete(t, m2)
}

func testAbandonRedeliversAtOnce(t *testing.T, h *harness) {
	o := h.sendNew(t, "abandon", nil)
	m := h.receiveOne(t)
	h.abandon(t, m)
	m2 := h.receiveOne(t) // no clock movement needed
	checkSame(t, m2, o)
	checkDelivery(t, m2, 2)
	h.complete(t, m2)
}

func testRenewLock(t *testing.T, h *harness) {
	h.sendNew(t, "renew", nil)
	m := h.receiveOne(t)
	first := m.LockedUntil
	step := h.caps.LockDuration * 2 / 3
	h.sleep(step)
	if err := h.q.RenewLock(t.Context(), m); err != nil {
		t.Fatalf("RenewLock: %v", err)
	}
	if !m.LockedUntil.After(first) {
		t.Errorf("LockedUntil after RenewLock: got %v, want after %v", m.LockedUntil, first)
	}
	h.sleep(step) // past the first lock, inside the renewed one
	h.expectNone(t, "while the renewed lock holds")
	h.complete(t, m)
}

func testReschedule(t *testing.T, h *harness) {
	o := h.sendNew(t, "reschedule", map[string]string{"job": "j1", "n": "2"})
	m := h.receiveOne(t)
	h.abandon(t, m)
	m = h.receiveOne(t)
	checkDelivery(t, m, 2)
	at := h.caps.Now().Add(h.caps.ScheduleDelay)
	if err := h.q.Reschedule(t.Context(), m, at); err != nil {
		t.Fatalf("Reschedule: %v", err)
	}
	h.expectNone(t, "before the rescheduled time")
	h.waitUntil(at)
	m3 := h.receiveOne(t)
	checkSame(t, m3, o)
	checkDelivery(t, m3, 3) // attempts are not reset
	// Rescheduling starts the delivery count towards dead-lettering afresh,
	// but the attempts stay visible.
	h.abandon(t, m3)
	m4 := h.receiveOne(t)
	checkDelivery(t, m4, 4)
	h.complete(t, m4)
}

func testScheduledSend(t *testing.T, h *harness) {
	o := queue.Outgoing{ID: h.id(), Body: []byte("later"), ScheduledAt: h.caps.Now().Add(h.caps.ScheduleDelay)}
	h.send(t, o)
	h.expectNone(t, "before ScheduledAt")
	h.waitUntil(o.ScheduledAt)
	m := h.receiveOne(t)
	checkSame(t, m, o)
	checkDelivery(t, m, 1)
	h.complete(t, m)
}

func checkDeadByMax(t *testing.T, h *harness, o queue.Outgoing) {
	t.Helper()
	h.expectNone(t, "after the last allowed delivery")
	d := h.receiveDeadN(t, 1)[0]
	checkSame(t, d, o)
	if d.DeadLetterReason != queue.ReasonMaxDeliveryCountExceeded {
		t.Errorf("DeadLetterReason: got %q, want %q", d.DeadLetterReason, queue.ReasonMaxDeliveryCountExceeded)
	}
	h.complete(t, d)
	h.expectNoneFrom(t, h.q.ReceiveDeadLetters, "dead letter after Complete")
}

func testMaxDeliveryCountByAbandon(t *testing.T, h *harness) {
	o := h.sendNew(t, "poison", map[string]string{"p": "1"})
	for i := 1; i <= h.caps.MaxDeliveryCount; i++ {
		m := h.receiveOne(t)
		checkDelivery(t, m, i)
		h.abandon(t, m)
	}
	checkDeadByMax(t, h, o)
}

func testMaxDeliveryCountByLockExpiry(t *testing.T, h *harness) {
	if h.caps.Advance == nil && time.Duration(h.caps.MaxDeliveryCount)*h.caps.LockDuration > 30*time.Second {
		t.Skipf("needs %d lock expiries of %v in real time", h.caps.MaxDeliveryCount, h.caps.LockDuration)
	}
	o := h.sendNew(t, "stuck", nil)
	for i := 1; i <= h.caps.MaxDeliveryCount; i++ {
		m := h.receiveOne(t)
		checkDelivery(t, m, i)
		h.sleep(h.caps.LockDuration + h.lockMargin()) // the receiver "crashed"
	}
	checkDeadByMax(t, h, o)
}

func testDeadLetter(t *testing.T, h *harness) {
	o := h.sendNew(t, "bad", map[string]string{"job": "j2"})
	m := h.receiveOne(t)
	if err := h.q.DeadLetter(t.Context(), m, "BackendRejected", "400 from swc-paygo: content filter"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	h.expectNone(t, "after DeadLetter")
	d := h.receiveDeadN(t, 1)[0]
	checkSame(t, d, o)
	if d.DeadLetterReason != "BackendRejected" || d.DeadLetterDescription != "400 from swc-paygo: content filter" {
		t.Errorf("dead letter: got %q / %q, want %q / %q", d.DeadLetterReason, d.DeadLetterDescription, "BackendRejected", "400 from swc-paygo: content filter")
	}
	if err := h.q.DeadLetter(t.Context(), d, "again", ""); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("DeadLetter of a dead letter: got %v, want ErrInvalid", err)
	}
	h.abandon(t, d) // back into the dead-letter queue
	d = h.receiveDeadN(t, 1)[0]
	checkSame(t, d, o)
	h.complete(t, d)
	h.expectNoneFrom(t, h.q.ReceiveDeadLetters, "dead letter after Complete")
	h.expectNone(t, "in the queue after completing its dead letter")
}

func testResubmitDeadLetter(t *testing.T, h *harness) {
	o := h.sendNew(t, "resubmit", map[string]string{"x": "y"})
	m := h.receiveOne(t)
	if err := h.q.DeadLetter(t.Context(), m, "Manual", "operator test"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	d := h.receiveDeadN(t, 1)[0]
	if err := h.q.Reschedule(t.Context(), d, time.Time{}); err != nil {
		t.Fatalf("Reschedule of a dead letter: %v", err)
	}
	m2 := h.receiveOne(t)
	checkSame(t, m2, o)
	if m2.DeadLetterReason != "" {
		t.Errorf("DeadLetterReason after resubmit: got %q, want empty", m2.DeadLetterReason)
	}
	if m2.DeliveryCount <= d.DeliveryCount {
		t.Errorf("DeliveryCount after resubmit: got %d, want more than %d", m2.DeliveryCount, d.DeliveryCount)
	}
	h.complete(t, m2)
	h.expectNoneFrom(t, h.q.ReceiveDeadLetters, "dead letter after resubmit")
}

func testSettleAfterLockLost(t *testing.T, h *harness) {
	h.sendNew(t, "slow", nil)
	stale := h.receiveOne(t)
	h.sleep(h.caps.LockDuration + h.lockMargin())
	fresh := h.receiveOne(t)
	checkDelivery(t, fresh, 2)
	ctx := t.Context()
	ops := []struct {
		name string
		fn   func() error
	}{
		{"Complete", func() error { return h.q.Complete(ctx, stale) }},
		{"Abandon", func() error { return h.q.Abandon(ctx, stale) }},
		{"RenewLock", func() error { return h.q.RenewLock(ctx, stale) }},
		{"DeadLetter", func() error { return h.q.DeadLetter(ctx, stale, "r", "d") }},
		{"Reschedule", func() error { return h.q.Reschedule(ctx, stale, h.caps.Now()) }},
	}
	for _, op := range ops {
		if err := op.fn(); !errors.Is(err, queue.ErrLockLost) {
			t.Errorf("%s with a lost lock: got %v, want ErrLockLost", op.name, err)
		}
	}
	h.complete(t, fresh) // the stale calls changed nothing
	h.expectNone(t, "after Complete")
}

func testDurability(t *testing.T, h *harness) {
	if h.caps.Reopen == nil {
		t.Skip("Caps.Reopen not set: durability is the broker's")
	}
	locked := h.sendNew(t, "locked", map[string]string{"k": "v"})
	waiting := h.sendNew(t, "waiting", nil)
	later := queue.Outgoing{ID: h.id(), Body: []byte("later"), ScheduledAt: h.caps.Now().Add(h.caps.LockDuration / 2)}
	h.send(t, later)
	m := h.receiveOne(t)
	checkSame(t, m, locked)

	h.q = h.caps.Reopen(t, h.q) // the receiver "crashed" holding the lock

	m = h.receiveOne(t)
	checkSame(t, m, waiting)
	h.complete(t, m)
	h.expectNone(t, "while the old lock holds and the schedule is ahead")
	h.sleep(h.caps.LockDuration + h.lockMargin())
	got := h.receiveN(t, 2)
	byID := map[string]*queue.Message{got[0].ID: got[0], got[1].ID: got[1]}
	if m := byID[locked.ID]; m == nil {
		t.Fatalf("after reopen and lock expiry: got %s and %s, want %s among them", got[0].ID, got[1].ID, locked.ID)
	} else {
		checkSame(t, m, locked)
		checkDelivery(t, m, 2)
	}
	if m := byID[later.ID]; m == nil {
		t.Fatalf("after reopen: got %s and %s, want %s among them", got[0].ID, got[1].ID, later.ID)
	} else {
		checkDelivery(t, m, 1)
	}
	for _, m := range got {
		h.complete(t, m)
	}
}

func testConcurrentReceivers(t *testing.T, h *harness) {
	const n, workers = 40, 4
	want := map[string]bool{}
	for range n {
		want[h.sendNew(t, "c", nil).ID] = true
	}
	var (
		mu        sync.Mutex
		held      = map[string]bool{}
		completed = map[string]int{}
	)
	ctx, cancel := context.WithTimeout(t.Context(), h.caps.ReceiveWait*3)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				mu.Lock()
				done := len(completed) == n
				mu.Unlock()
				if done {
					return
				}
				msgs, err := h.q.Receive(ctx, 5, 200*time.Millisecond)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("Receive: %v", err)
					}
					return
				}
				for _, m := range h.filter(t, msgs) {
					mu.Lock()
					if held[m.ID] {
						t.Errorf("message %s delivered to two receivers while locked", m.ID)
					}
					held[m.ID] = true
					mu.Unlock()
					err := h.q.Complete(ctx, m)
					mu.Lock()
					delete(held, m.ID)
					if err == nil {
						completed[m.ID]++
					} else if !errors.Is(err, queue.ErrLockLost) {
						t.Errorf("Complete(%s): %v", m.ID, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for id := range want {
		if completed[id] != 1 {
			t.Errorf("message %s completed %d times, want 1", id, completed[id])
		}
	}
}

func testLargeBody(t *testing.T, h *harness) {
	body := make([]byte, h.caps.LargeBody)
	_, _ = rand.Read(body)
	o := queue.Outgoing{ID: h.id(), Body: body, Properties: map[string]string{"size": "large"}}
	h.send(t, o)
	m := h.receiveOne(t)
	checkSame(t, m, o)
	h.complete(t, m)
}

// testLargeJobThroughClaimCheck sends a 1 MiB job the way jobs.Submit does:
// the body goes to a blob, the message carries the reference and stays far
// below the queue's limit; the receiver loads the body back and releases
// the blob when done. Sending the body inline must be refused.
func testLargeJobThroughClaimCheck(t *testing.T, h *harness) {
	blobs := h.caps.Blobs
	if blobs == nil {
		d, err := blob.OpenDir(t.TempDir(), "job-bodies")
		if err != nil {
			t.Fatalf("blob dir: %v", err)
		}
		blobs = d
	}
	cc := claim.New(blobs, claim.DefaultThreshold, func(err error) bool { return errors.Is(err, blob.ErrNotFound) })
	body := make([]byte, 1<<20)
	_, _ = rand.Read(body)
	o := queue.Outgoing{ID: h.id(), Body: body, Properties: map[string]string{"op": "chat/completions", "model": "m"}}
	if err := h.q.Send(t.Context(), o); !errors.Is(err, queue.ErrInvalid) {
		t.Fatalf("Send of a 1 MiB body inline: got %v, want ErrInvalid (Service Bus Standard refuses messages above 256 KB)", err)
	}
	w, err := cc.Wrap(t.Context(), o)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	if n := len(w.Body); n > claim.DefaultThreshold {
		t.Fatalf("wrapped body is %d bytes, want at most %d", n, claim.DefaultThreshold)
	}
	h.send(t, w)
	m := h.receiveOne(t)
	if !claim.Claimed(m) || m.Properties["op"] != "chat/completions" {
		t.Fatalf("received properties %v, want the claim reference and the job's properties", m.Properties)
	}
	got, err := cc.Body(t.Context(), m)
	if err != nil {
		t.Fatalf("Body: %v", err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("Body: got %d bytes, want the %d bytes sent", len(got), len(body))
	}
	h.complete(t, m)
	if err := cc.Release(t.Context(), m); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, err := cc.Body(t.Context(), m); !errors.Is(err, claim.ErrMissing) {
		t.Errorf("Body after Release: got %v, want ErrMissing (the blob is deleted)", err)
	}
}

func testInvalid(t *testing.T, h *harness) {
	tests := []struct {
		name string
		m    queue.Outgoing
	}{
		{"EmptyID", queue.Outgoing{Body: []byte("x")}},
		{"LongID", queue.Outgoing{ID: string(make([]byte, queue.MaxIDLength+1))}},
		{"ReservedProperty", queue.Outgoing{ID: h.id(), Properties: map[string]string{queue.ReservedPrefix + "x": "1"}}},
		{"EmptyPropertyKey", queue.Outgoing{ID: h.id(), Properties: map[string]string{"": "1"}}},
		{"TooLarge", queue.Outgoing{ID: h.id(), Body: make([]byte, queue.MaxMessageBytes)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := h.q.Send(t.Context(), tt.m); !errors.Is(err, queue.ErrInvalid) {
				t.Errorf("Send: got %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := h.q.Receive(t.Context(), 0, 0); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("Receive(max 0): got %v, want ErrInvalid", err)
	}
	if err := h.q.Complete(t.Context(), &queue.Message{ID: "forged"}); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("Complete of a message not received: got %v, want ErrInvalid", err)
	}
}

func testCanceledContext(t *testing.T, h *harness) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := h.q.Send(ctx, queue.Outgoing{ID: h.id()}); !errors.Is(err, context.Canceled) {
		t.Errorf("Send: got %v, want context.Canceled", err)
	}
	if _, err := h.q.Receive(ctx, 1, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Receive: got %v, want context.Canceled", err)
	}
}

func testClosed(t *testing.T, h *harness) {
	h.sendNew(t, "close", nil)
	m := h.receiveOne(t)
	if err := h.q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	ops := []struct {
		name string
		fn   func() error
	}{
		{"Send", func() error { return h.q.Send(ctx, queue.Outgoing{ID: h.id()}) }},
		{"Receive", func() error { _, err := h.q.Receive(ctx, 1, 0); return err }},
		{"ReceiveDeadLetters", func() error { _, err := h.q.ReceiveDeadLetters(ctx, 1, 0); return err }},
		{"Complete", func() error { return h.q.Complete(ctx, m) }},
		{"Abandon", func() error { return h.q.Abandon(ctx, m) }},
		{"Reschedule", func() error { return h.q.Reschedule(ctx, m, time.Time{}) }},
		{"DeadLetter", func() error { return h.q.DeadLetter(ctx, m, "r", "") }},
		{"RenewLock", func() error { return h.q.RenewLock(ctx, m) }},
	}
	for _, op := range ops {
		if err := op.fn(); !errors.Is(err, queue.ErrClosed) {
			t.Errorf("%s after Close: got %v, want ErrClosed", op.name, err)
		}
	}
}
