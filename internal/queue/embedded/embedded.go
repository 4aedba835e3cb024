package embedded

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/foundry-gateway/gateway/internal/boltfile"
	"github.com/foundry-gateway/gateway/internal/queue"
)

// Interface guards.
var _ queue.Queue = (*Queue)(nil)

// openTimeout bounds the wait for the file lock held by another process that
// has the same file open.
const openTimeout = 2 * time.Second

// Defaults, those of a Service Bus queue.
const (
	DefaultLockDuration     = 60 * time.Second
	DefaultMaxDeliveryCount = 10
)

// Clock tells the time. Tests inject a fake one to move through lock
// expiries and schedules without sleeping.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Options configure Open. The zero value gives the defaults.
type Options struct {
	// LockDuration is how long a delivery stays locked to its receiver.
	// Zero means DefaultLockDuration (60 s).
	LockDuration time.Duration
	// MaxDeliveryCount is the number of deliveries (since Send or the last
	// Reschedule) after which an expired or abandoned message is
	// dead-lettered. Zero means DefaultMaxDeliveryCount (10).
	MaxDeliveryCount int
	// Clock drives due times and locks. Nil means the system clock. The
	// wait of Receive is always real time.
	Clock Clock
}

// Queue is a queue.Queue kept in one bbolt file. It is safe for concurrent
// use; bbolt serialises the writes, which is what makes a lock exclusive.
type Queue struct {
	db    *bbolt.DB
	lock  time.Duration
	max   uint32
	clock Clock

	mu     sync.RWMutex // held for reading around every use of db; Close takes it for writing
	closed bool
	done   chan struct{} // closed by Close: wakes waiting receivers

	sigMu sync.Mutex
	sig   chan struct{} // closed and replaced when a message may have become due
}

// Open opens (or creates) the queue file at path, creating its directory if
// needed. Only one process may have it open at a time; Open fails after a
// few seconds if another one does. It starts no goroutine.
func Open(path string, opts Options) (*Queue, error) {
	if opts.LockDuration < 0 || opts.MaxDeliveryCount < 0 {
		return nil, fmt.Errorf("embedded queue: %w: negative LockDuration or MaxDeliveryCount", queue.ErrInvalid)
	}
	if opts.LockDuration == 0 {
		opts.LockDuration = DefaultLockDuration
	}
	if opts.MaxDeliveryCount == 0 {
		opts.MaxDeliveryCount = DefaultMaxDeliveryCount
	}
	if opts.Clock == nil {
		opts.Clock = systemClock{}
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("embedded queue: open %s: %w", path, err)
		}
	}
	db, err := boltfile.Open(path, "embedded queue", openTimeout) // errors name the file and what to do
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketBody, bucketIDs, bucketReady, bucketLast, bucketDead} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("embedded queue: open %s: %w", path, err)
	}
	return &Queue{
		db:    db,
		lock:  opts.LockDuration,
		max:   uint32(opts.MaxDeliveryCount),
		clock: opts.Clock,
		done:  make(chan struct{}),
		sig:   make(chan struct{}),
	}, nil
}

// LockDuration is the lock duration the queue was opened with.
func (q *Queue) LockDuration() time.Duration { return q.lock }

// Close implements [queue.Queue.Close]. Closing twice is not an error.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	close(q.done)
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("embedded queue: close: %w", err)
	}
	return nil
}

// update runs fn in a write transaction unless the queue is closed or ctx is
// done.
func (q *Queue) update(ctx context.Context, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return queue.ErrClosed
	}
	return q.db.Update(fn)
}

// signal wakes every waiting receiver.
func (q *Queue) signal() {
	q.sigMu.Lock()
	close(q.sig)
	q.sig = make(chan struct{})
	q.sigMu.Unlock()
}

func (q *Queue) signalChan() <-chan struct{} {
	q.sigMu.Lock()
	defer q.sigMu.Unlock()
	return q.sig
}

// Send implements [queue.Queue.Send]. An ID that is still in the queue or its
// dead-letter queue is a duplicate: Send drops the new message and returns
// nil, as Service Bus does with duplicate detection enabled.
func (q *Queue) Send(ctx context.Context, m queue.Outgoing) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("embedded queue: send: %w", err)
	}
	now := nanos(q.clock.Now())
	due := now
	if !m.ScheduledAt.IsZero() {
		due = max(now, nanos(m.ScheduledAt))
	}
	err := q.update(ctx, func(tx *bbolt.Tx) error {
		ids := tx.Bucket(bucketIDs)
		if ids.Get([]byte(m.ID)) != nil {
			return nil // duplicate
		}
		meta := tx.Bucket(bucketMeta)
		seq, err := meta.NextSequence()
		if err != nil {
			return err
		}
		r := &record{where: inReady, due: due, enqueuedAt: now, id: m.ID}
		if len(m.Properties) > 0 {
			r.props = make(map[string]string, len(m.Properties))
			for k, v := range m.Properties {
				r.props[k] = v
			}
		}
		k := seqKey(seq)
		if err := meta.Put(k, r.encode()); err != nil {
			return err
		}
		if err := tx.Bucket(bucketBody).Put(k, m.Body); err != nil {
			return err
		}
		if err := ids.Put([]byte(m.ID), k); err != nil {
			return err
		}
		return tx.Bucket(bucketReady).Put(indexKey(r.due, seq), nil)
	})
	if err != nil {
		return fmt.Errorf("embedded queue: send %s: %w", m.ID, err)
	}
	q.signal()
	return nil
}

// Receive implements [queue.Queue.Receive].
func (q *Queue) Receive(ctx context.Context, max int, wait time.Duration) ([]*queue.Message, error) {
	msgs, err := q.receive(ctx, inReady, max, wait)
	if err != nil {
		return nil, fmt.Errorf("embedded queue: receive: %w", err)
	}
	return msgs, nil
}

// ReceiveDeadLetters implements [queue.Queue.ReceiveDeadLetters].
func (q *Queue) ReceiveDeadLetters(ctx context.Context, max int, wait time.Duration) ([]*queue.Message, error) {
	msgs, err := q.receive(ctx, inDead, max, wait)
	if err != nil {
		return nil, fmt.Errorf("embedded queue: receive dead letters: %w", err)
	}
	return msgs, nil
}

// receive delivers from one index, waiting (in real time) for a Send, a
// settlement or the next due time until wait has passed.
func (q *Queue) receive(ctx context.Context, from where, n int, wait time.Duration) ([]*queue.Message, error) {
	if n <= 0 {
		return nil, fmt.Errorf("%w: max is %d", queue.ErrInvalid, n)
	}
	deadline := time.Now().Add(wait)
	for {
		sig := q.signalChan() // before looking, so a change after the look wakes us
		var (
			msgs []*queue.Message
			next int64 // next due time in the index, 0 if none
		)
		err := q.update(ctx, func(tx *bbolt.Tx) error {
			now := nanos(q.clock.Now())
			if err := q.sweep(tx, now); err != nil {
				return err
			}
			var err error
			msgs, err = q.deliver(tx, from, now, n)
			if err != nil || len(msgs) > 0 {
				return err
			}
			next = q.nextDue(tx, from)
			return nil
		})
		if err != nil || len(msgs) > 0 {
			return msgs, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		if next != 0 {
			if d := time.Duration(next - nanos(q.clock.Now())); d < left {
				left = max(d, time.Millisecond)
			}
		}
		t := time.NewTimer(left)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-q.done:
			t.Stop()
			return nil, queue.ErrClosed
		case <-sig:
		case <-t.C:
		}
		t.Stop()
	}
}

// nextDue is the earliest due time in an index (and, for the queue, in the
// last-delivery index, whose expiry can dead-letter), or 0.
func (q *Queue) nextDue(tx *bbolt.Tx, from where) int64 {
	var next int64
	for _, w := range []where{from, inLast} {
		if k, _ := tx.Bucket(w.bucket()).Cursor().First(); k != nil {
			if due, _ := splitIndexKey(k); next == 0 || due < next {
				next = max(due, 1)
			}
		}
	}
	return next
}

// sweep dead-letters the messages whose last allowed delivery's lock has
// expired.
func (q *Queue) sweep(tx *bbolt.Tx, now int64) error {
	keys := dueKeys(tx.Bucket(bucketLast), now, -1)
	for _, k := range keys {
		_, seq := splitIndexKey(k)
		r, err := q.load(tx, seq)
		if err != nil {
			return err
		}
		if err := q.move(tx, seq, r, func(r *record) {
			q.deadLetter(r, now, queue.ReasonMaxDeliveryCountExceeded, q.maxDeliveryDescription())
		}); err != nil {
			return err
		}
	}
	return nil
}

func (q *Queue) maxDeliveryDescription() string {
	return fmt.Sprintf("Message could not be consumed after %d delivery attempts.", q.max)
}

func (q *Queue) deadLetter(r *record, now int64, reason, description string) {
	r.where = inDead
	r.locked = false
	r.due = now
	r.reason = reason
	r.description = description
}

// dueKeys copies up to n (n < 0: all) index keys due at now; the caller
// mutates the bucket afterwards, which a live cursor would not survive.
func dueKeys(b *bbolt.Bucket, now int64, n int) [][]byte {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && n != 0; k, _ = c.Next() {
		if due, _ := splitIndexKey(k); due > now {
			break
		}
		keys = append(keys, bytes.Clone(k))
		n--
	}
	return keys
}

// deliver locks and returns up to n due messages of one index.
func (q *Queue) deliver(tx *bbolt.Tx, from where, now int64, n int) ([]*queue.Message, error) {
	keys := dueKeys(tx.Bucket(from.bucket()), now, n)
	if len(keys) == 0 {
		return nil, nil
	}
	msgs := make([]*queue.Message, 0, len(keys))
	bodies := tx.Bucket(bucketBody)
	for _, k := range keys {
		_, seq := splitIndexKey(k)
		r, err := q.load(tx, seq)
		if err != nil {
			return nil, err
		}
		var token [16]byte
		_, _ = rand.Read(token[:]) // crypto/rand.Read never fails
		err = q.move(tx, seq, r, func(r *record) {
			r.deliveries++
			r.locked = true
			r.token = token
			r.due = now + int64(q.lock)
			if r.where != inDead {
				r.sinceSchedule++
				if r.sinceSchedule >= q.max {
					r.where = inLast
				}
			}
		})
		if err != nil {
			return nil, err
		}
		m := &queue.Message{
			ID:                    r.id,
			Body:                  bytes.Clone(bodies.Get(seqKey(seq))),
			DeliveryCount:         int(r.deliveries),
			EnqueuedAt:            fromNanos(r.enqueuedAt),
			LockedUntil:           fromNanos(r.due),
			DeadLetterReason:      r.reason,
			DeadLetterDescription: r.description,
		}
		if m.Body == nil {
			m.Body = []byte{}
		}
		if len(r.props) > 0 {
			m.Properties = make(map[string]string, len(r.props))
			for k, v := range r.props {
				m.Properties[k] = v
			}
		}
		queue.SetHandle(m, &handle{q: q, seq: seq, token: token})
		msgs = append(msgs, m)
	}
	return msgs, nil
}

func (q *Queue) load(tx *bbolt.Tx, seq uint64) (*record, error) {
	v := tx.Bucket(bucketMeta).Get(seqKey(seq))
	if v == nil {
		return nil, nil
	}
	r, err := decodeRecord(v)
	if err != nil {
		return nil, fmt.Errorf("message %d: %w", seq, err)
	}
	return r, nil
}

// move applies change to r and stores it, moving its index entry.
func (q *Queue) move(tx *bbolt.Tx, seq uint64, r *record, change func(r *record)) error {
	if r == nil {
		return fmt.Errorf("message %d: %w", seq, errCorrupt)
	}
	if err := tx.Bucket(r.where.bucket()).Delete(indexKey(r.due, seq)); err != nil {
		return err
	}
	change(r)
	if err := tx.Bucket(r.where.bucket()).Put(indexKey(r.due, seq), nil); err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(seqKey(seq), r.encode())
}

// handle is the settlement handle of one delivery.
type handle struct {
	q     *Queue
	seq   uint64
	token [16]byte
}

// settle runs fn on the message m refers to, if m's delivery still holds its
// lock.
func (q *Queue) settle(ctx context.Context, op string, m *queue.Message, fn func(tx *bbolt.Tx, seq uint64, r *record, now int64) error) error {
	h, ok := queue.HandleOf(m).(*handle)
	if !ok || h.q != q {
		return fmt.Errorf("embedded queue: %s: %w: message was not received from this queue", op, queue.ErrInvalid)
	}
	err := q.update(ctx, func(tx *bbolt.Tx) error {
		now := nanos(q.clock.Now())
		r, err := q.load(tx, h.seq)
		if err != nil {
			return err
		}
		if r == nil || !r.locked || r.token != h.token || r.due <= now {
			return queue.ErrLockLost
		}
		return fn(tx, h.seq, r, now)
	})
	if err != nil {
		return fmt.Errorf("embedded queue: %s %s: %w", op, m.ID, err)
	}
	return nil
}

// Complete implements [queue.Queue.Complete].
func (q *Queue) Complete(ctx context.Context, m *queue.Message) error {
	return q.settle(ctx, "complete", m, func(tx *bbolt.Tx, seq uint64, r *record, _ int64) error {
		k := seqKey(seq)
		if err := tx.Bucket(r.where.bucket()).Delete(indexKey(r.due, seq)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Delete(k); err != nil {
			return err
		}
		if err := tx.Bucket(bucketBody).Delete(k); err != nil {
			return err
		}
		ids := tx.Bucket(bucketIDs)
		if bytes.Equal(ids.Get([]byte(r.id)), k) {
			return ids.Delete([]byte(r.id))
		}
		return nil
	})
}

// Abandon implements [queue.Queue.Abandon].
func (q *Queue) Abandon(ctx context.Context, m *queue.Message) error {
	err := q.settle(ctx, "abandon", m, func(tx *bbolt.Tx, seq uint64, r *record, now int64) error {
		return q.move(tx, seq, r, func(r *record) {
			if r.where == inLast {
				q.deadLetter(r, now, queue.ReasonMaxDeliveryCountExceeded, q.maxDeliveryDescription())
				return
			}
			r.locked = false
			r.due = now
		})
	})
	if err == nil {
		q.signal()
	}
	return err
}

// Reschedule implements [queue.Queue.Reschedule]: the message stays where it
// is in the file and only its due time changes, so this is atomic here.
func (q *Queue) Reschedule(ctx context.Context, m *queue.Message, at time.Time) error {
	err := q.settle(ctx, "reschedule", m, func(tx *bbolt.Tx, seq uint64, r *record, now int64) error {
		return q.move(tx, seq, r, func(r *record) {
			r.where = inReady
			r.locked = false
			r.due = max(now, nanos(at))
			r.sinceSchedule = 0
			r.reason, r.description = "", ""
		})
	})
	if err == nil {
		q.signal()
	}
	return err
}

// errAlreadyDead refuses DeadLetter on a dead letter, as Service Bus does.
var errAlreadyDead = fmt.Errorf("%w: message is already dead-lettered", queue.ErrInvalid)

// DeadLetter implements [queue.Queue.DeadLetter].
func (q *Queue) DeadLetter(ctx context.Context, m *queue.Message, reason, description string) error {
	err := q.settle(ctx, "dead-letter", m, func(tx *bbolt.Tx, seq uint64, r *record, now int64) error {
		if r.where == inDead {
			return errAlreadyDead
		}
		return q.move(tx, seq, r, func(r *record) { q.deadLetter(r, now, reason, description) })
	})
	if err == nil {
		q.signal()
	}
	return err
}

// RenewLock implements [queue.Queue.RenewLock].
func (q *Queue) RenewLock(ctx context.Context, m *queue.Message) error {
	var until int64
	err := q.settle(ctx, "renew lock", m, func(tx *bbolt.Tx, seq uint64, r *record, now int64) error {
		return q.move(tx, seq, r, func(r *record) {
			r.due = now + int64(q.lock)
			until = r.due
		})
	})
	if err != nil {
		return err
	}
	m.LockedUntil = fromNanos(until)
	return nil
}
