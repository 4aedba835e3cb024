package servicebus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/foundry-gateway/gateway/internal/queue"
)

// Interface guards.
var _ queue.Queue = (*Queue)(nil)

const (
	// minWait is the shortest Receive wait: a network receive needs at least
	// a round trip (and link setup on first use) to see a due message.
	minWait = time.Second
	// maxReceive caps one Receive (azservicebus allows 5000 link credits).
	maxReceive = 5000
	// closeTimeout bounds Close, which has no context of its own.
	closeTimeout = 30 * time.Second
)

// Options configure New.
type Options struct {
	// ConnectionString authenticates with a shared access key (local runs,
	// the emulator: UseDevelopmentEmulator=true). When set it wins over
	// Namespace, as in the Functions app-settings convention.
	ConnectionString string
	// Namespace is the fully qualified namespace, e.g.
	// sb-gateway.servicebus.windows.net, used with managed identity.
	Namespace string
	// ClientID selects a user-assigned managed identity for Namespace;
	// empty means DefaultAzureCredential. Ignored with ConnectionString.
	ClientID string
	// Queue is the queue name. Required.
	Queue string
}

// LogValue implements slog.LogValuer: the connection string never reaches a
// log.
func (o Options) LogValue() slog.Value {
	cs := ""
	if o.ConnectionString != "" {
		cs = "[REDACTED]"
	}
	return slog.GroupValue(
		slog.String("connectionString", cs),
		slog.String("namespace", o.Namespace),
		slog.String("clientId", o.ClientID),
		slog.String("queue", o.Queue),
	)
}

// validate reports every problem at once.
func (o Options) validate() error {
	var errs []error
	if o.Queue == "" {
		errs = append(errs, errors.New("queue name is empty"))
	}
	if o.ConnectionString == "" {
		switch {
		case o.Namespace == "":
			errs = append(errs, errors.New("neither a connection string nor a namespace is set"))
		case strings.Contains(o.Namespace, "/") || strings.Contains(o.Namespace, ":") || !strings.Contains(o.Namespace, "."):
			errs = append(errs, fmt.Errorf("namespace %q is not a fully qualified host name (like x.servicebus.windows.net)", o.Namespace))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("servicebus: %w: %w", queue.ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// credential is the managed identity for clientID, or DefaultAzureCredential.
func credential(clientID string) (azcore.TokenCredential, error) {
	if clientID != "" {
		return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(clientID)})
	}
	return azidentity.NewDefaultAzureCredential(nil)
}

// Queue is a queue.Queue on one Service Bus queue. It is safe for concurrent
// use; receives on the same sub-queue are serialised (azservicebus allows one
// at a time per receiver).
type Queue struct {
	client *azservicebus.Client
	sender *azservicebus.Sender
	main   *receiver
	dead   *receiver
	now    func() time.Time

	mu     sync.RWMutex
	closed bool
}

// receiver is one peek-lock receiver and the 1-slot semaphore that keeps its
// ReceiveMessages calls apart.
type receiver struct {
	r    *azservicebus.Receiver
	sem  chan struct{}
	dead bool
}

// New builds the client, sender and receivers. It does not connect: the
// first call does, so a bad credential or a missing queue shows there. ctx is
// for symmetry with other constructors; New does no I/O.
func New(ctx context.Context, opts Options) (*Queue, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("servicebus: %w", err)
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	var (
		client *azservicebus.Client
		err    error
	)
	if opts.ConnectionString != "" {
		client, err = azservicebus.NewClientFromConnectionString(opts.ConnectionString, nil)
	} else {
		var cred azcore.TokenCredential
		cred, err = credential(opts.ClientID)
		if err == nil {
			client, err = azservicebus.NewClient(opts.Namespace, cred, nil)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("servicebus: client: %w", err)
	}
	q := &Queue{client: client, now: time.Now}
	fail := func(err error) (*Queue, error) {
		cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		_ = client.Close(cctx)
		return nil, fmt.Errorf("servicebus: queue %s: %w", opts.Queue, err)
	}
	if q.sender, err = client.NewSender(opts.Queue, nil); err != nil {
		return fail(err)
	}
	r, err := client.NewReceiverForQueue(opts.Queue, &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModePeekLock})
	if err != nil {
		return fail(err)
	}
	q.main = &receiver{r: r, sem: make(chan struct{}, 1)}
	r, err = client.NewReceiverForQueue(opts.Queue, &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModePeekLock, SubQueue: azservicebus.SubQueueDeadLetter})
	if err != nil {
		return fail(err)
	}
	q.dead = &receiver{r: r, sem: make(chan struct{}, 1), dead: true}
	return q, nil
}

// Close implements [queue.Queue.Close]. Closing twice is not an error.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	err := errors.Join(q.main.r.Close(ctx), q.dead.r.Close(ctx), q.sender.Close(ctx), q.client.Close(ctx))
	if err != nil {
		return fmt.Errorf("servicebus: close: %w", err)
	}
	return nil
}

func (q *Queue) isClosed() bool {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.closed
}

// mapErr turns Service Bus error codes into the contract's errors, keeping
// the original in the chain.
func (q *Queue) mapErr(err error) error {
	if err == nil {
		return nil
	}
	var sbErr *azservicebus.Error
	if errors.As(err, &sbErr) {
		switch sbErr.Code {
		case azservicebus.CodeLockLost:
			return fmt.Errorf("%w: %w", queue.ErrLockLost, err)
		case azservicebus.CodeClosed:
			return fmt.Errorf("%w: %w", queue.ErrClosed, err)
		}
	}
	if q.isClosed() && !errors.Is(err, queue.ErrClosed) {
		return fmt.Errorf("%w: %w", queue.ErrClosed, err)
	}
	return err
}

// Send implements [queue.Queue.Send]. With duplicate detection enabled on
// the entity, a repeated ID inside its window is accepted and dropped.
func (q *Queue) Send(ctx context.Context, m queue.Outgoing) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("servicebus: send: %w", err)
	}
	if err := q.ready(ctx); err != nil {
		return fmt.Errorf("servicebus: send %s: %w", m.ID, err)
	}
	if err := q.sender.SendMessage(ctx, toSend(m, q.now()), nil); err != nil {
		return fmt.Errorf("servicebus: send %s: %w", m.ID, q.mapErr(err))
	}
	return nil
}

// ready fails when ctx is done or the queue is closed.
func (q *Queue) ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if q.isClosed() {
		return queue.ErrClosed
	}
	return nil
}

// Receive implements [queue.Queue.Receive]. wait is raised to at least one
// second (a network receive needs a round trip), and a message that has just
// become due may take a moment longer to show.
func (q *Queue) Receive(ctx context.Context, max int, wait time.Duration) ([]*queue.Message, error) {
	msgs, err := q.receive(ctx, q.main, max, wait)
	if err != nil {
		return nil, fmt.Errorf("servicebus: receive: %w", err)
	}
	return msgs, nil
}

// ReceiveDeadLetters implements [queue.Queue.ReceiveDeadLetters] on the
// queue's $DeadLetterQueue sub-queue.
func (q *Queue) ReceiveDeadLetters(ctx context.Context, max int, wait time.Duration) ([]*queue.Message, error) {
	msgs, err := q.receive(ctx, q.dead, max, wait)
	if err != nil {
		return nil, fmt.Errorf("servicebus: receive dead letters: %w", err)
	}
	return msgs, nil
}

func (q *Queue) receive(ctx context.Context, rc *receiver, n int, wait time.Duration) ([]*queue.Message, error) {
	if n <= 0 {
		return nil, fmt.Errorf("%w: max is %d", queue.ErrInvalid, n)
	}
	if err := q.ready(ctx); err != nil {
		return nil, err
	}
	n = min(n, maxReceive)
	wait = max(wait, minWait)
	select {
	case rc.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-rc.sem }()
	if err := q.ready(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	rms, err := rc.r.ReceiveMessages(rctx, n, nil)
	if err != nil && len(rms) == 0 {
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case rctx.Err() != nil:
			return nil, nil // nothing within wait
		default:
			return nil, q.mapErr(err)
		}
	}
	msgs := make([]*queue.Message, 0, len(rms))
	for _, rm := range rms {
		m, err := fromReceived(rm, rc.dead)
		if err != nil {
			// A message we cannot read is not ours to drop: abandon it and
			// let max delivery count dead-letter it where operators look.
			_ = rc.r.AbandonMessage(ctx, rm, nil)
			continue
		}
		queue.SetHandle(m, &handle{q: q, rc: rc, rm: rm})
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// handle is the settlement handle of one delivery.
type handle struct {
	q       *Queue
	rc      *receiver
	rm      *azservicebus.ReceivedMessage
	settled atomic.Bool
}

// handleOf checks m came from q and has not been settled by this process.
func (q *Queue) handleOf(ctx context.Context, m *queue.Message) (*handle, error) {
	h, ok := queue.HandleOf(m).(*handle)
	if !ok || h.q != q {
		return nil, fmt.Errorf("%w: message was not received from this queue", queue.ErrInvalid)
	}
	if err := q.ready(ctx); err != nil {
		return nil, err
	}
	if h.settled.Load() {
		return nil, fmt.Errorf("%w: message already settled", queue.ErrLockLost)
	}
	return h, nil
}

// settle runs one settlement and marks the handle settled when it worked.
func (q *Queue) settle(ctx context.Context, op string, m *queue.Message, fn func(h *handle) error) error {
	h, err := q.handleOf(ctx, m)
	if err == nil {
		err = fn(h)
	}
	if err != nil {
		return fmt.Errorf("servicebus: %s %s: %w", op, m.ID, q.mapErr(err))
	}
	h.settled.Store(true)
	return nil
}

// Complete implements [queue.Queue.Complete].
func (q *Queue) Complete(ctx context.Context, m *queue.Message) error {
	return q.settle(ctx, "complete", m, func(h *handle) error {
		return h.rc.r.CompleteMessage(ctx, h.rm, nil)
	})
}

// Abandon implements [queue.Queue.Abandon]. Service Bus dead-letters the
// message itself when this was its last allowed delivery.
func (q *Queue) Abandon(ctx context.Context, m *queue.Message) error {
	return q.settle(ctx, "abandon", m, func(h *handle) error {
		return h.rc.r.AbandonMessage(ctx, h.rm, nil)
	})
}

// DeadLetter implements [queue.Queue.DeadLetter].
func (q *Queue) DeadLetter(ctx context.Context, m *queue.Message, reason, description string) error {
	return q.settle(ctx, "dead-letter", m, func(h *handle) error {
		if h.rc.dead {
			return fmt.Errorf("%w: message is already dead-lettered", queue.ErrInvalid)
		}
		return h.rc.r.DeadLetterMessage(ctx, h.rm, &azservicebus.DeadLetterOptions{Reason: &reason, ErrorDescription: &description})
	})
}

// RenewLock implements [queue.Queue.RenewLock].
func (q *Queue) RenewLock(ctx context.Context, m *queue.Message) error {
	h, err := q.handleOf(ctx, m)
	if err == nil {
		err = h.rc.r.RenewMessageLock(ctx, h.rm, nil)
	}
	if err != nil {
		return fmt.Errorf("servicebus: renew lock %s: %w", m.ID, q.mapErr(err))
	}
	if h.rm.LockedUntil != nil {
		m.LockedUntil = *h.rm.LockedUntil
	}
	return nil
}

// Reschedule implements [queue.Queue.Reschedule]. Service Bus cannot move a
// message's due time, so this
//
//  1. renews the lock (proving we still hold it and making room for 2 and 3),
//  2. schedules a copy for at (see rescheduleCopy: the logical ID, the
//     delivery count so far and the first enqueue time are carried in
//     reserved properties, so DeliveryCount keeps counting up),
//  3. completes the original; if that fails, it cancels the copy.
//
// It is at least once, not exactly once: if the process dies between 2 and 3
// (or the cancel in 3 fails), the original is delivered again when its lock
// expires while the copy also arrives at at. With duplicate detection on the
// entity a repeated Reschedule of that same delivery is dropped, but the
// consumer must still tolerate two deliveries of one ID: the jobs layer is
// idempotent per ID. The maximum delivery count restarts with the copy (the
// broker counts per broker message). A dead letter rescheduled this way goes
// back to the queue.
func (q *Queue) Reschedule(ctx context.Context, m *queue.Message, at time.Time) error {
	h, err := q.handleOf(ctx, m)
	if err != nil {
		return fmt.Errorf("servicebus: reschedule %s: %w", m.ID, q.mapErr(err))
	}
	if err := h.rc.r.RenewMessageLock(ctx, h.rm, nil); err != nil {
		return fmt.Errorf("servicebus: reschedule %s: renew lock: %w", m.ID, q.mapErr(err))
	}
	var seq int64
	if h.rm.SequenceNumber != nil {
		seq = *h.rm.SequenceNumber
	}
	if now := q.now(); at.Before(now) {
		at = now
	}
	at = at.UTC()
	seqs, err := q.sender.ScheduleMessages(ctx, []*azservicebus.Message{rescheduleCopy(m, seq)}, at, nil)
	if err != nil {
		return fmt.Errorf("servicebus: reschedule %s: schedule copy: %w", m.ID, q.mapErr(err))
	}
	if err := h.rc.r.CompleteMessage(ctx, h.rm, nil); err != nil {
		err = q.mapErr(err)
		if cerr := q.sender.CancelScheduledMessages(ctx, seqs, nil); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cancel copy: %w (the message may be delivered twice)", cerr))
		}
		return fmt.Errorf("servicebus: reschedule %s: complete original: %w", m.ID, err)
	}
	h.settled.Store(true)
	return nil
}
