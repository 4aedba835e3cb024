package servicebus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/foundry-gateway/gateway/internal/queue"
)

// fakeConnectionString is well formed; nothing is ever dialled with it.
const fakeConnectionString = "Endpoint=sb://example.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0"

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string // substring; empty = valid
	}{
		{"ConnectionString", Options{ConnectionString: fakeConnectionString, Queue: "lowpri"}, ""},
		{"ConnectionStringWinsOverNamespace", Options{ConnectionString: fakeConnectionString, Namespace: "not valid", Queue: "lowpri"}, ""},
		{"ManagedIdentity", Options{Namespace: "sb-x.servicebus.windows.net", ClientID: "00000000-0000-0000-0000-000000000001", Queue: "lowpri"}, ""},
		{"DefaultCredential", Options{Namespace: "sb-x.servicebus.windows.net", Queue: "lowpri"}, ""},
		{"NoQueue", Options{ConnectionString: fakeConnectionString}, "queue name is empty"},
		{"NoConnection", Options{Queue: "lowpri"}, "neither a connection string nor a namespace"},
		{"NamespaceURL", Options{Namespace: "sb://sb-x.servicebus.windows.net/", Queue: "lowpri"}, "not a fully qualified host name"},
		{"NamespaceShort", Options{Namespace: "sb-x", Queue: "lowpri"}, "not a fully qualified host name"},
		{"Everything", Options{}, "queue name is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, queue.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestOptionsLogValueRedacts(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("queue", "opts", Options{ConnectionString: fakeConnectionString, Queue: "lowpri"})
	if out := buf.String(); strings.Contains(out, "c2VjcmV0") || !strings.Contains(out, "[REDACTED]") {
		t.Errorf("log line: got %q, want the connection string redacted", out)
	}
}

// newOffline builds a Queue that never connects: only the local guards run.
func newOffline(t *testing.T) *Queue {
	t.Helper()
	q, err := New(t.Context(), Options{ConnectionString: fakeConnectionString, Queue: "lowpri"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func TestNew(t *testing.T) {
	newOffline(t)
	q, err := New(t.Context(), Options{Namespace: "sb-x.servicebus.windows.net", ClientID: "00000000-0000-0000-0000-000000000001", Queue: "lowpri"})
	if err != nil {
		t.Fatalf("New with managed identity: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := New(t.Context(), Options{Queue: "lowpri"}); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("New without a connection: got %v, want ErrInvalid", err)
	}
	if _, err := New(t.Context(), Options{ConnectionString: "Endpoint=nonsense", Queue: "lowpri"}); err == nil {
		t.Errorf("New with a bad connection string: got no error")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := New(ctx, Options{ConnectionString: fakeConnectionString, Queue: "lowpri"}); !errors.Is(err, context.Canceled) {
		t.Errorf("New with a canceled context: got %v, want context.Canceled", err)
	}
}

func TestLocalGuards(t *testing.T) {
	q := newOffline(t)
	ctx := t.Context()
	if err := q.Send(ctx, queue.Outgoing{}); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("Send without ID: got %v, want ErrInvalid", err)
	}
	if _, err := q.Receive(ctx, 0, 0); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("Receive(0): got %v, want ErrInvalid", err)
	}
	forged := &queue.Message{ID: "x"}
	if err := q.Complete(ctx, forged); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("Complete of a forged message: got %v, want ErrInvalid", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := q.Send(canceled, queue.Outgoing{ID: "a"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a canceled context: got %v, want context.Canceled", err)
	}

	// A handle settled by this process fails locally, without the broker.
	m := &queue.Message{ID: "settled"}
	h := &handle{q: q, rc: q.main, rm: &azservicebus.ReceivedMessage{MessageID: "settled"}}
	h.settled.Store(true)
	queue.SetHandle(m, h)
	if err := q.Complete(ctx, m); !errors.Is(err, queue.ErrLockLost) {
		t.Errorf("Complete twice: got %v, want ErrLockLost", err)
	}
	// DeadLetter of a dead letter is refused before any I/O.
	d := &queue.Message{ID: "dead"}
	queue.SetHandle(d, &handle{q: q, rc: q.dead, rm: &azservicebus.ReceivedMessage{MessageID: "dead"}})
	if err := q.DeadLetter(ctx, d, "r", "d"); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("DeadLetter of a dead letter: got %v, want ErrInvalid", err)
	}

	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
	ops := []struct {
		name string
		fn   func() error
	}{
		{"Send", func() error { return q.Send(ctx, queue.Outgoing{ID: "a"}) }},
		{"Receive", func() error { _, err := q.Receive(ctx, 1, 0); return err }},
		{"ReceiveDeadLetters", func() error { _, err := q.ReceiveDeadLetters(ctx, 1, 0); return err }},
		{"Complete", func() error { return q.Complete(ctx, d) }},
		{"Abandon", func() error { return q.Abandon(ctx, d) }},
		{"Reschedule", func() error { return q.Reschedule(ctx, d, time.Time{}) }},
		{"RenewLock", func() error { return q.RenewLock(ctx, d) }},
	}
	for _, op := range ops {
		if err := op.fn(); !errors.Is(err, queue.ErrClosed) {
			t.Errorf("%s after Close: got %v, want ErrClosed", op.name, err)
		}
	}
}

func TestMapErr(t *testing.T) {
	q := newOffline(t)
	other := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"LockLost", fmt.Errorf("settle: %w", &azservicebus.Error{Code: azservicebus.CodeLockLost}), queue.ErrLockLost},
		{"Closed", &azservicebus.Error{Code: azservicebus.CodeClosed}, queue.ErrClosed},
		{"Other", other, other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := q.mapErr(tt.err)
			if !errors.Is(got, tt.want) || !errors.Is(got, tt.err) {
				t.Errorf("got %v, want it to wrap %v and %v", got, tt.want, tt.err)
			}
		})
	}
	if q.mapErr(nil) != nil {
		t.Errorf("mapErr(nil): got non-nil")
	}
}

func TestToSend(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	o := queue.Outgoing{ID: "job-1", Body: []byte("b"), Properties: map[string]string{"team": "r"}, ScheduledAt: now.Add(time.Minute)}
	m := toSend(o, now)
	if *m.MessageID != "job-1" || string(m.Body) != "b" || m.ApplicationProperties["team"] != "r" {
		t.Errorf("got id %q body %q props %v, want job-1, b, team=r", *m.MessageID, m.Body, m.ApplicationProperties)
	}
	if m.ScheduledEnqueueTime == nil || !m.ScheduledEnqueueTime.Equal(o.ScheduledAt) {
		t.Errorf("ScheduledEnqueueTime: got %v, want %v", m.ScheduledEnqueueTime, o.ScheduledAt)
	}
	for _, at := range []time.Time{{}, now.Add(-time.Second)} {
		if m := toSend(queue.Outgoing{ID: "x", ScheduledAt: at}, now); m.ScheduledEnqueueTime != nil || m.Body == nil || m.ApplicationProperties != nil {
			t.Errorf("ScheduledAt %v: got scheduled %v, body %v, props %v, want unscheduled, empty body, no props", at, m.ScheduledEnqueueTime, m.Body, m.ApplicationProperties)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestFromReceived(t *testing.T) {
	enq := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	locked := enq.Add(time.Minute)
	tests := []struct {
		name string
		rm   *azservicebus.ReceivedMessage
		dead bool
		want queue.Message
	}{
		{
			name: "Plain",
			rm: &azservicebus.ReceivedMessage{MessageID: "job-1", Body: []byte("b"), DeliveryCount: 1, EnqueuedTime: &enq, LockedUntil: &locked,
				ApplicationProperties: map[string]any{"team": "r", "n": int64(3)}},
			want: queue.Message{ID: "job-1", Body: []byte("b"), Properties: map[string]string{"team": "r", "n": "3"}, DeliveryCount: 1, EnqueuedAt: enq, LockedUntil: locked},
		},
		{
			name: "RescheduledCopy",
			rm: &azservicebus.ReceivedMessage{MessageID: "job-1~77", DeliveryCount: 2, EnqueuedTime: &locked, LockedUntil: &locked,
				ApplicationProperties: map[string]any{propID: "job-1", propDeliveries: "4", propEnqueuedAt: enq.Format(time.RFC3339Nano), queue.ReservedPrefix + "future": "x"}},
			want: queue.Message{ID: "job-1", Body: []byte{}, DeliveryCount: 6, EnqueuedAt: enq, LockedUntil: locked},
		},
		{
			name: "DeadLetter",
			rm: &azservicebus.ReceivedMessage{MessageID: "job-2", DeliveryCount: 10, DeadLetterReason: ptr(queue.ReasonMaxDeliveryCountExceeded), DeadLetterErrorDescription: ptr("Message could not be consumed after 10 delivery attempts."),
				ApplicationProperties: map[string]any{"DeadLetterReason": queue.ReasonMaxDeliveryCountExceeded, "DeadLetterErrorDescription": "Message could not be consumed after 10 delivery attempts.", "team": "r"}},
			dead: true,
			want: queue.Message{ID: "job-2", Body: []byte{}, Properties: map[string]string{"team": "r"}, DeliveryCount: 10,
				DeadLetterReason: queue.ReasonMaxDeliveryCountExceeded, DeadLetterDescription: "Message could not be consumed after 10 delivery attempts."},
		},
		{
			name: "SameNamesOutsideTheDeadLetterQueue",
			rm:   &azservicebus.ReceivedMessage{MessageID: "job-3", DeliveryCount: 1, ApplicationProperties: map[string]any{"DeadLetterReason": "mine"}},
			want: queue.Message{ID: "job-3", Body: []byte{}, Properties: map[string]string{"DeadLetterReason": "mine"}, DeliveryCount: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fromReceived(tt.rm, tt.dead)
			if err != nil {
				t.Fatalf("fromReceived: %v", err)
			}
			checkMessage(t, got, &tt.want)
		})
	}
	for _, bad := range []map[string]any{{propDeliveries: "many"}, {propDeliveries: "-1"}, {propEnqueuedAt: "yesterday"}} {
		if _, err := fromReceived(&azservicebus.ReceivedMessage{MessageID: "x", ApplicationProperties: bad}, false); err == nil {
			t.Errorf("fromReceived with %v: got no error", bad)
		}
	}
}

func checkMessage(t *testing.T, got, want *queue.Message) {
	t.Helper()
	if got.ID != want.ID || !bytes.Equal(got.Body, want.Body) || got.Body == nil ||
		!maps.Equal(got.Properties, want.Properties) || got.DeliveryCount != want.DeliveryCount ||
		!got.EnqueuedAt.Equal(want.EnqueuedAt) || !got.LockedUntil.Equal(want.LockedUntil) ||
		got.DeadLetterReason != want.DeadLetterReason || got.DeadLetterDescription != want.DeadLetterDescription {
		t.Errorf("got %+v, want %+v", *got, *want)
	}
}

// TestRescheduleCopyRoundTrip follows a message through two reschedules as
// the broker would deliver the copies: the ID, body, properties and first
// enqueue time stay, and the delivery count keeps counting.
func TestRescheduleCopyRoundTrip(t *testing.T) {
	enq := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	orig := &azservicebus.ReceivedMessage{MessageID: "job-9", Body: []byte("req"), DeliveryCount: 2, EnqueuedTime: &enq,
		SequenceNumber: ptr(int64(41)), ApplicationProperties: map[string]any{"team": "r"}}
	m, err := fromReceived(orig, false)
	if err != nil {
		t.Fatalf("fromReceived: %v", err)
	}
	seq := int64(41)
	for i, wantCount := range []int{3, 4} {
		cp := rescheduleCopy(m, seq)
		if want := fmt.Sprintf("job-9~%d", seq); *cp.MessageID != want {
			t.Errorf("copy %d MessageId: got %q, want %q (fresh, so duplicate detection keeps it)", i, *cp.MessageID, want)
		}
		if again := rescheduleCopy(m, seq); *again.MessageID != *cp.MessageID {
			t.Errorf("copy %d MessageId is not deterministic: got %q and %q", i, *cp.MessageID, *again.MessageID)
		}
		later := enq.Add(time.Hour)
		seq += 100
		delivered := &azservicebus.ReceivedMessage{MessageID: *cp.MessageID, Body: cp.Body, DeliveryCount: 1, EnqueuedTime: &later,
			SequenceNumber: &seq, ApplicationProperties: cp.ApplicationProperties}
		m, err = fromReceived(delivered, false)
		if err != nil {
			t.Fatalf("fromReceived copy %d: %v", i, err)
		}
		checkMessage(t, m, &queue.Message{ID: "job-9", Body: []byte("req"), Properties: map[string]string{"team": "r"}, DeliveryCount: wantCount, EnqueuedAt: enq})
	}
	long := &queue.Message{ID: strings.Repeat("x", queue.MaxIDLength)}
	if id := *rescheduleCopy(long, 1<<63-1).MessageID; len(id) > 128 {
		t.Errorf("copy MessageId of a longest ID: got %d characters, want at most 128 (the Service Bus limit)", len(id))
	}
}
