package queuetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/queue"
	"github.com/foundry-gateway/gateway/internal/queue/claim"
)

// Caps tells the suite what it may assume about the queue under test.
type Caps struct {
	// LockDuration of the queue (for Service Bus an entity setting: read it
	// from the queue's properties). Required.
	LockDuration time.Duration
	// MaxDeliveryCount of the queue. Required.
	MaxDeliveryCount int

	// Now and Advance drive a fake clock shared with the queue. Nil means
	// real time: Now is time.Now and the suite sleeps instead of advancing,
	// so keep LockDuration short (Service Bus allows 5 s).
	Now     func() time.Time
	Advance func(d time.Duration)

	// Shared means every queue open returns uses one broker entity: the
	// suite drains the queue and its dead-letter queue first, and messages
	// without this run's ID prefix are abandoned and ignored. Otherwise
	// every open returns an empty, independent queue. Cases run in parallel
	// only when the queues are independent and time is real (a fake clock
	// is shared by all cases).
	Shared bool

	// Reopen closes q and opens the same storage again, as a restart after
	// a crash would. Nil skips the durability case.
	Reopen func(t *testing.T, q queue.Queue) queue.Queue

	// ReceiveWait bounds how long the suite waits for a message it expects
	// (default 10 s; Receive returns as soon as one is there). EmptyWait is
	// how long it waits before concluding that nothing is delivered
	// (default 50 ms with a fake clock, 2 s in real time). ScheduleDelay is
	// how far ahead the scheduling cases schedule (default 3 s).
	ReceiveWait   time.Duration
	EmptyWait     time.Duration
	ScheduleDelay time.Duration

	// LargeBody is the body size of the large-message case (default
	// 250 KiB: Service Bus Standard's 256 KB less room for headers).
	LargeBody int

	// Blobs holds the bodies of the claim-check case (a 1 MiB job). Nil:
	// a fresh blob.Dir under the case's temporary directory.
	Blobs claim.Blobs
}

func (c *Caps) fill() {
	if c.ReceiveWait == 0 {
		c.ReceiveWait = 10 * time.Second
	}
	if c.EmptyWait == 0 {
		c.EmptyWait = 2 * time.Second
		if c.Advance != nil {
			c.EmptyWait = 50 * time.Millisecond
		}
	}
	if c.ScheduleDelay == 0 {
		c.ScheduleDelay = 3 * time.Second
	}
	if c.LargeBody == 0 {
		c.LargeBody = 250 << 10
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Run runs the contract suite. open is called once per case and must return
// an open queue (see Caps.Shared); Run closes it when the case ends, so Close
// must tolerate being called twice.
func Run(t *testing.T, open func(t *testing.T) queue.Queue, caps Caps) {
	if caps.LockDuration <= 0 || caps.MaxDeliveryCount <= 0 {
		t.Fatalf("queuetest: Caps.LockDuration and Caps.MaxDeliveryCount are required, got %v and %d", caps.LockDuration, caps.MaxDeliveryCount)
	}
	caps.fill()
	run := "qt-" + randomHex(6) + "-"
	if caps.Shared {
		q := open(t)
		drain(t, q, caps)
		if err := q.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"SendReceiveComplete", testSendReceiveComplete},
		{"NoProperties", testNoProperties},
		{"PeekLockExclusive", testPeekLockExclusive},
		{"LockExpiryRedelivers", testLockExpiryRedelivers},
		{"AbandonRedeliversAtOnce", testAbandonRedeliversAtOnce},
		{"RenewLock", testRenewLock},
		{"Reschedule", testReschedule},
		{"ScheduledSend", testScheduledSend},
		{"MaxDeliveryCountByAbandon", testMaxDeliveryCountByAbandon},
		{"MaxDeliveryCountByLockExpiry", testMaxDeliveryCountByLockExpiry},
		{"DeadLetter", testDeadLetter},
		{"ResubmitDeadLetter", testResubmitDeadLetter},
		{"SettleAfterLockLost", testSettleAfterLockLost},
		{"Durability", testDurability},
		{"ConcurrentReceivers", testConcurrentReceivers},
		{"LargeBody", testLargeBody},
		{"LargeJobThroughClaimCheck", testLargeJobThroughClaimCheck},
		{"Invalid", testInvalid},
		{"CanceledContext", testCanceledContext},
		{"Closed", testClosed},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !caps.Shared && caps.Advance == nil {
				t.Parallel()
			}
			q := open(t)
			h := &harness{q: q, caps: caps, prefix: fmt.Sprintf("%s%02d-", run, i)}
			t.Cleanup(func() {
				if err := h.q.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, h)
		})
	}
}

// drain completes everything left in a shared queue and its dead-letter
// queue.
func drain(t *testing.T, q queue.Queue, caps Caps) {
	t.Helper()
	wait := min(caps.EmptyWait, time.Second)
	for _, recv := range []func(context.Context, int, time.Duration) ([]*queue.Message, error){q.Receive, q.ReceiveDeadLetters} {
		for {
			msgs, err := recv(t.Context(), 100, wait)
			if err != nil {
				t.Fatalf("drain: %v", err)
			}
			if len(msgs) == 0 {
				break
			}
			for _, m := range msgs {
				if err := q.Complete(t.Context(), m); err != nil && !errors.Is(err, queue.ErrLockLost) {
					t.Fatalf("drain: Complete %s: %v", m.ID, err)
				}
			}
		}
	}
}

// harness gives a case its queue, its ID prefix and helpers.
type harness struct {
	q      queue.Queue
	caps   Caps
	prefix string
	mu     sync.Mutex
	n      int
}

// id returns a fresh message ID of this case.
func (h *harness) id() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	return fmt.Sprintf("%s%03d-%s", h.prefix, h.n, randomHex(4))
}

func (h *harness) own(m *queue.Message) bool { return strings.HasPrefix(m.ID, h.prefix) }

// sleep advances the fake clock, or sleeps in real time.
func (h *harness) sleep(d time.Duration) {
	if h.caps.Advance != nil {
		h.caps.Advance(d)
		return
	}
	time.Sleep(d)
}

// waitUntil moves the fake clock to just past at, or sleeps until then.
func (h *harness) waitUntil(at time.Time) {
	if d := at.Sub(h.caps.Now()) + h.lockMargin(); d > 0 {
		h.sleep(d)
	}
}

// lockMargin is added to a lock duration to be sure it has passed.
func (h *harness) lockMargin() time.Duration {
	if h.caps.Advance != nil {
		return time.Millisecond
	}
	return time.Second
}

func (h *harness) send(t *testing.T, m queue.Outgoing) {
	t.Helper()
	if err := h.q.Send(t.Context(), m); err != nil {
		t.Fatalf("Send(%s): %v", m.ID, err)
	}
}

// sendNew sends a message with a fresh ID and returns it.
func (h *harness) sendNew(t *testing.T, body string, props map[string]string) queue.Outgoing {
	t.Helper()
	m := queue.Outgoing{ID: h.id(), Body: []byte(body), Properties: props}
	h.send(t, m)
	return m
}

// filter abandons foreign messages and returns the case's own.
func (h *harness) filter(t *testing.T, msgs []*queue.Message) []*queue.Message {
	t.Helper()
	var own []*queue.Message
	for _, m := range msgs {
		if h.own(m) {
			own = append(own, m)
			continue
		}
		if err := h.q.Abandon(t.Context(), m); err != nil && !errors.Is(err, queue.ErrLockLost) {
			t.Logf("abandoning foreign message %s: %v", m.ID, err)
		}
	}
	return own
}

// receiveN receives until it holds n of the case's messages or ReceiveWait
// has passed, and fails the test on fewer.
func (h *harness) receiveN(t *testing.T, n int) []*queue.Message {
	t.Helper()
	return h.receiveFrom(t, h.q.Receive, n)
}

func (h *harness) receiveDeadN(t *testing.T, n int) []*queue.Message {
	t.Helper()
	return h.receiveFrom(t, h.q.ReceiveDeadLetters, n)
}

func (h *harness) receiveFrom(t *testing.T, recv func(context.Context, int, time.Duration) ([]*queue.Message, error), n int) []*queue.Message {
	t.Helper()
	var got []*queue.Message
	deadline := time.Now().Add(h.caps.ReceiveWait)
	for len(got) < n {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("received %d messages within %v, want %d", len(got), h.caps.ReceiveWait, n)
		}
		msgs, err := recv(t.Context(), n-len(got), left)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		got = append(got, h.filter(t, msgs)...)
	}
	return got
}

func (h *harness) receiveOne(t *testing.T) *queue.Message {
	t.Helper()
	return h.receiveN(t, 1)[0]
}

// expectNone fails if one of the case's messages is delivered within
// EmptyWait.
func (h *harness) expectNone(t *testing.T, what string) {
	t.Helper()
	h.expectNoneFrom(t, h.q.Receive, what)
}

func (h *harness) expectNoneFrom(t *testing.T, recv func(context.Context, int, time.Duration) ([]*queue.Message, error), what string) {
	t.Helper()
	deadline := time.Now().Add(h.caps.EmptyWait)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		msgs, err := recv(t.Context(), 10, left)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if own := h.filter(t, msgs); len(own) > 0 {
			t.Fatalf("%s: got message %s (delivery %d), want none", what, own[0].ID, own[0].DeliveryCount)
		}
		if h.caps.Advance != nil && len(msgs) == 0 {
			return // a fake clock does not move while we wait
		}
	}
}

func (h *harness) complete(t *testing.T, m *queue.Message) {
	t.Helper()
	if err := h.q.Complete(t.Context(), m); err != nil {
		t.Fatalf("Complete(%s): %v", m.ID, err)
	}
}

func (h *harness) abandon(t *testing.T, m *queue.Message) {
	t.Helper()
	if err := h.q.Abandon(t.Context(), m); err != nil {
		t.Fatalf("Abandon(%s): %v", m.ID, err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
