package claim

import (
	"context"
	"errors"
	"fmt"

	"github.com/foundry-gateway/gateway/internal/queue"
)

// Property is the application property that names a message's body blob.
// Its presence marks a claimed message; the message body is then empty.
const Property = "claim-blob"

// DefaultThreshold is the largest body sent inline: 192 KiB leaves room in
// Service Bus Standard's 256 KB for the message's properties and the
// broker's own headers (see queue.MaxMessageBytes).
const DefaultThreshold = 192 << 10

// ErrMissing means a claimed message's blob is gone: it was deleted by an
// earlier, finished delivery, or never written. The message cannot be run.
var ErrMissing = errors.New("claim: the message body blob is missing")

// ErrStore means Wrap could not store a body: nothing was sent.
var ErrStore = errors.New("claim: cannot store the message body")

// Blobs is what the claim check needs from a blob container.
type Blobs interface {
	Put(ctx context.Context, name string, data []byte) error
	Get(ctx context.Context, name string) ([]byte, error)
	Delete(ctx context.Context, name string) error
}

// Check moves large bodies to blobs. A nil *Check sends every body inline
// (and then the queue refuses those above its limit).
type Check struct {
	blobs      Blobs
	threshold  int
	isNotFound func(error) bool
}

// New returns a check that stores bodies above threshold bytes (0 means
// DefaultThreshold) in blobs. isNotFound tells the blob store's "no such
// blob" error (blob.ErrNotFound) from a failure.
func New(blobs Blobs, threshold int, isNotFound func(error) bool) *Check {
	if threshold <= 0 {
		threshold = DefaultThreshold
	}
	return &Check{blobs: blobs, threshold: threshold, isNotFound: isNotFound}
}

// Threshold is the largest body sent inline.
func (c *Check) Threshold() int {
	if c == nil {
		return queue.MaxMessageBytes
	}
	return c.threshold
}

// Wrap returns o ready to send: unchanged when its body is at most the
// threshold, else with the body stored in the blob named o.ID and replaced
// by the Property reference. A Wrap error means nothing was stored for
// good and nothing must be sent. If the Send that follows fails, call
// Discard.
func (c *Check) Wrap(ctx context.Context, o queue.Outgoing) (queue.Outgoing, error) {
	if c == nil || len(o.Body) <= c.threshold {
		return o, nil
	}
	if err := c.blobs.Put(ctx, o.ID, o.Body); err != nil {
		return o, fmt.Errorf("%w of %s: %w", ErrStore, o.ID, err)
	}
	props := make(map[string]string, len(o.Properties)+1)
	for k, v := range o.Properties {
		props[k] = v
	}
	props[Property] = o.ID
	o.Body, o.Properties = nil, props
	return o, nil
}

// Discard deletes the blob Wrap stored for o, after its Send failed, so no
// blob is left without a message.
func (c *Check) Discard(ctx context.Context, o queue.Outgoing) error {
	name := o.Properties[Property]
	if c == nil || name == "" {
		return nil
	}
	return c.blobs.Delete(ctx, name)
}

// Claimed reports whether m's body is in a blob.
func Claimed(m *queue.Message) bool { return m.Properties[Property] != "" }

// Body returns m's body: m.Body, or the content of its blob. ErrMissing
// (wrapped) when the blob is gone; other errors are transient.
func (c *Check) Body(ctx context.Context, m *queue.Message) ([]byte, error) {
	name := m.Properties[Property]
	if name == "" {
		return m.Body, nil
	}
	if c == nil {
		return nil, fmt.Errorf("claim: message %s has its body in blob %s but no blob store is configured", m.ID, name)
	}
	b, err := c.blobs.Get(ctx, name)
	if err != nil && c.isNotFound != nil && c.isNotFound(err) {
		return nil, fmt.Errorf("%w: message %s, blob %s", ErrMissing, m.ID, name)
	}
	if err != nil {
		return nil, fmt.Errorf("claim: load the body of %s: %w", m.ID, err)
	}
	return b, nil
}

// Release deletes m's body blob, if it has one. Call it only when the
// message's work is finished for good (completed, failed, cancelled or
// dead-lettered by the consumer): a redelivery after Release cannot load
// its body. Releasing twice is fine.
func (c *Check) Release(ctx context.Context, m *queue.Message) error {
	name := m.Properties[Property]
	if c == nil || name == "" {
		return nil
	}
	if err := c.blobs.Delete(ctx, name); err != nil {
		return fmt.Errorf("claim: delete the body of %s: %w", m.ID, err)
	}
	return nil
}

// sender is the queue's Send.
type sender interface {
	Send(ctx context.Context, m queue.Outgoing) error
}

// Sender sends every message through a claim check: Wrap, Send, and
// Discard when the Send fails, so no blob outlives a message that was never
// accepted. A Wrap failure is returned (ErrStore) and nothing is sent.
type Sender struct {
	Queue sender
	Check *Check
}

// Send implements the queue's Send with the claim check.
func (s Sender) Send(ctx context.Context, o queue.Outgoing) error {
	w, err := s.Check.Wrap(ctx, o)
	if err != nil {
		return err
	}
	if err := s.Queue.Send(ctx, w); err != nil {
		if derr := s.Check.Discard(context.WithoutCancel(ctx), w); derr != nil {
			return errors.Join(err, fmt.Errorf("claim: discard the body of %s: %w", o.ID, derr))
		}
		return err
	}
	return nil
}
