package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors callers branch on with errors.Is. Implementations wrap them with %w.
var (
	// ErrLockLost means the caller no longer holds the message's lock: the
	// lock expired (whether or not another receiver has taken the message
	// since), or the message was already settled. The message was not
	// changed by the failed call; it will be (or already was) delivered
	// again, so the caller must not assume its work was acknowledged.
	ErrLockLost = errors.New("queue: message lock lost")

	// ErrClosed means the queue was closed.
	ErrClosed = errors.New("queue: closed")

	// ErrInvalid means the request cannot be valid: an empty or too long
	// message ID, a reserved or oversized property, a body that is too
	// large, a Message that did not come from this queue, or an operation
	// a dead-lettered message does not allow.
	ErrInvalid = errors.New("queue: invalid request")
)

// Limits every implementation enforces or relies on. They are those of an
// Azure Service Bus Standard queue, so that code which works on the embedded
// queue also works on Service Bus.
const (
	// MaxIDLength is the longest message ID in bytes. Service Bus allows
	// 128 characters; the servicebus adapter appends a suffix to the broker
	// MessageId when it reschedules a message, so IDs are kept shorter.
	MaxIDLength = 100

	// MaxMessageBytes bounds ID, body and properties together (Service Bus
	// Standard: 256 KB including the broker's own headers, so a message
	// close to this limit may still be refused there; keep a few KB spare).
	MaxMessageBytes = 256 << 10

	// MaxPropertyBytes bounds one property (key plus value); all properties
	// together must stay under MaxPropertiesBytes.
	MaxPropertyBytes   = 32 << 10
	MaxPropertiesBytes = 64 << 10

	// ReservedPrefix starts the property keys implementations use for their
	// own bookkeeping (carried delivery counts, the logical ID). Send refuses
	// such keys and received messages never show them.
	ReservedPrefix = "x-queue-"

	// ReasonMaxDeliveryCountExceeded is the DeadLetterReason of a message that
	// was delivered the maximum number of times without being completed.
	// It is the string Service Bus uses.
	ReasonMaxDeliveryCountExceeded = "MaxDeliveryCountExceeded"
)

// Queue is the contract both implementations honour. All methods are safe for
// concurrent use. Methods that settle a message (Complete, Abandon,
// Reschedule, DeadLetter) or extend its lock (RenewLock) take a *Message
// returned by Receive or ReceiveDeadLetters on the same queue; they need the
// lock that delivery took and fail with ErrLockLost once it is gone.
type Queue interface {
	// Send enqueues one message. It returns once the message is durably
	// accepted: a nil error means it will be delivered at least once. A
	// message with a future ScheduledAt is not delivered before that time.
	// An ID that is still known to the queue may be dropped as a duplicate
	// (see Outgoing.ID), and Send then still returns nil.
	Send(ctx context.Context, m Outgoing) error

	// Receive returns up to max messages that are due, each locked to the
	// caller until its LockedUntil: no other Receive returns it meanwhile.
	// Each delivery counts (DeliveryCount is 1 on the first). It returns as
	// soon as at least one message is available, or an empty slice and a
	// nil error when none became available within wait (wait <= 0: look
	// once). A message that has used up the maximum delivery count goes to
	// the dead-letter queue instead of being returned.
	Receive(ctx context.Context, max int, wait time.Duration) ([]*Message, error)

	// Complete removes the message for good. ErrLockLost if the lock was
	// lost: the message will be, or already was, delivered again.
	Complete(ctx context.Context, m *Message) error

	// Abandon releases the lock now, so the message is due again at once.
	// The delivery already counted; when it was the last one allowed the
	// message moves to the dead-letter queue (MaxDeliveryCountExceeded).
	Abandon(ctx context.Context, m *Message) error

	// Reschedule makes the message due again at at (now if at is in the
	// past), keeping its ID, body, properties, EnqueuedAt and DeliveryCount,
	// so attempts are not reset; the next delivery has DeliveryCount + 1.
	// The maximum delivery count starts afresh: rescheduling is a decision
	// of the consumer, not a failed delivery, and the consumer sees the
	// total in DeliveryCount. Rescheduling a dead-lettered message puts it
	// back on the queue (with its dead-letter reason cleared).
	//
	// It may be at least once itself: Service Bus has no in-place
	// reschedule, so the adapter schedules a copy and then completes the
	// original; a crash between the two can deliver the message twice.
	Reschedule(ctx context.Context, m *Message, at time.Time) error

	// DeadLetter moves the message to the dead-letter queue with a reason
	// and description for operators. Not allowed on a message that is
	// already dead-lettered (ErrInvalid).
	DeadLetter(ctx context.Context, m *Message, reason, description string) error

	// RenewLock extends the lock by the lock duration from now and updates
	// m.LockedUntil. ErrLockLost if it had already expired.
	RenewLock(ctx context.Context, m *Message) error

	// ReceiveDeadLetters is Receive on the dead-letter queue: peek-locked
	// messages with DeadLetterReason and DeadLetterDescription set. Complete
	// removes one for good; Abandon puts it back in the dead-letter queue;
	// Reschedule returns it to the queue. Dead letters never expire into
	// another dead-letter queue.
	ReceiveDeadLetters(ctx context.Context, max int, wait time.Duration) ([]*Message, error)

	// Close releases the queue. Every call after Close (and a Receive
	// waiting when Close is called) fails with ErrClosed. Locks held stay
	// until they expire, as after a crash.
	Close() error
}

// Outgoing is a message to Send.
type Outgoing struct {
	// ID identifies the message; required, at most MaxIDLength bytes. It is
	// the Service Bus MessageId, used for duplicate detection when the
	// entity has it enabled, and it is what consumers use for idempotency.
	// Use one ID per logical message (the job ID) and never reuse it for
	// different content.
	ID string
	// Body is the payload; may be empty.
	Body []byte
	// Properties are application properties. Keys must be non-empty and must
	// not start with ReservedPrefix.
	Properties map[string]string
	// ScheduledAt delays the first delivery until then. Zero (or a time in
	// the past) means now.
	ScheduledAt time.Time
}

// Validate checks o against the limits above. Implementations call it in
// Send; it wraps ErrInvalid.
func (o Outgoing) Validate() error {
	if o.ID == "" {
		return fmt.Errorf("%w: message ID is empty", ErrInvalid)
	}
	if len(o.ID) > MaxIDLength {
		return fmt.Errorf("%w: message ID is %d bytes, more than %d", ErrInvalid, len(o.ID), MaxIDLength)
	}
	total := 0
	for k, v := range o.Properties {
		if k == "" {
			return fmt.Errorf("%w: message %s: empty property key", ErrInvalid, o.ID)
		}
		if strings.HasPrefix(k, ReservedPrefix) {
			return fmt.Errorf("%w: message %s: property %q uses the reserved prefix %q", ErrInvalid, o.ID, k, ReservedPrefix)
		}
		n := len(k) + len(v)
		if n > MaxPropertyBytes {
			return fmt.Errorf("%w: message %s: property %q is %d bytes, more than %d", ErrInvalid, o.ID, k, n, MaxPropertyBytes)
		}
		total += n
	}
	if total > MaxPropertiesBytes {
		return fmt.Errorf("%w: message %s: properties are %d bytes, more than %d", ErrInvalid, o.ID, total, MaxPropertiesBytes)
	}
	if n := len(o.ID) + len(o.Body) + total; n > MaxMessageBytes {
		return fmt.Errorf("%w: message %s is %d bytes, more than %d", ErrInvalid, o.ID, n, MaxMessageBytes)
	}
	return nil
}

// Message is a delivered, locked message. Its fields are a snapshot taken at
// delivery (RenewLock updates LockedUntil); changing them changes nothing in
// the queue. A Message must only be passed back to the queue that returned it.
type Message struct {
	// ID is the Outgoing.ID it was sent with (kept across Reschedule).
	ID string
	// Body and Properties as sent (Properties is nil when there were none).
	Body       []byte
	Properties map[string]string
	// DeliveryCount is 1 on the first delivery and counts every delivery
	// since Send, Reschedules included.
	DeliveryCount int
	// EnqueuedAt is when the queue accepted the message. The embedded queue
	// keeps the first Send's time across Reschedule; Service Bus reports
	// the broker's time for the original send (carried across Reschedule).
	EnqueuedAt time.Time
	// LockedUntil is when this delivery's lock expires.
	LockedUntil time.Time
	// DeadLetterReason and DeadLetterDescription are set on messages from
	// ReceiveDeadLetters (ReasonMaxDeliveryCountExceeded when the queue
	// dead-lettered it itself).
	DeadLetterReason      string
	DeadLetterDescription string

	handle any // the implementation's lock token; see SetHandle
}

// SetHandle attaches an implementation's settlement handle (its lock token)
// to m. For implementations of Queue only.
func SetHandle(m *Message, h any) { m.handle = h }

// HandleOf returns what SetHandle attached, or nil. For implementations of
// Queue only.
func HandleOf(m *Message) any {
	if m == nil {
		return nil
	}
	return m.handle
}
