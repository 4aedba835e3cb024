package servicebus

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/foundry-gateway/gateway/internal/queue"
)

// Properties the adapter carries on a rescheduled copy. Their prefix is
// reserved by the contract, so they never clash with the caller's.
const (
	// propID is the logical message ID; the copy's broker MessageId differs.
	propID = queue.ReservedPrefix + "id"
	// propDeliveries is the number of deliveries before this copy.
	propDeliveries = queue.ReservedPrefix + "deliveries"
	// propEnqueuedAt is the original enqueue time, RFC 3339 with nanoseconds.
	propEnqueuedAt = queue.ReservedPrefix + "enqueued-at"
)

// Application properties Service Bus itself sets on a dead-lettered message.
const (
	sbDeadLetterReason      = "DeadLetterReason"
	sbDeadLetterDescription = "DeadLetterErrorDescription"
)

// toSend maps an Outgoing onto a Service Bus message. A ScheduledAt not
// after now is left out, so the message is available at once.
func toSend(o queue.Outgoing, now time.Time) *azservicebus.Message {
	id := o.ID
	m := &azservicebus.Message{MessageID: &id, Body: o.Body}
	if m.Body == nil {
		m.Body = []byte{}
	}
	if len(o.Properties) > 0 {
		m.ApplicationProperties = make(map[string]any, len(o.Properties))
		for k, v := range o.Properties {
			m.ApplicationProperties[k] = v
		}
	}
	if o.ScheduledAt.After(now) {
		at := o.ScheduledAt.UTC()
		m.ScheduledEnqueueTime = &at
	}
	return m
}

// fromReceived maps a received message onto a queue.Message (without its
// handle). dead says it came from the dead-letter queue, whose messages carry
// the dead-letter reason as application properties too.
func fromReceived(rm *azservicebus.ReceivedMessage, dead bool) (*queue.Message, error) {
	m := &queue.Message{ID: rm.MessageID, Body: rm.Body, DeliveryCount: int(rm.DeliveryCount)}
	if m.Body == nil {
		m.Body = []byte{}
	}
	if rm.EnqueuedTime != nil {
		m.EnqueuedAt = *rm.EnqueuedTime
	}
	if rm.LockedUntil != nil {
		m.LockedUntil = *rm.LockedUntil
	}
	if rm.DeadLetterReason != nil {
		m.DeadLetterReason = *rm.DeadLetterReason
	}
	if rm.DeadLetterErrorDescription != nil {
		m.DeadLetterDescription = *rm.DeadLetterErrorDescription
	}
	for k, v := range rm.ApplicationProperties {
		s, ok := v.(string)
		if !ok {
			s = fmt.Sprint(v) // sent by another producer; the contract is strings
		}
		switch {
		case k == propID:
			m.ID = s
		case k == propDeliveries:
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("message %s: property %s is %q, want a count", rm.MessageID, k, s)
			}
			m.DeliveryCount += n
		case k == propEnqueuedAt:
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, fmt.Errorf("message %s: property %s: %w", rm.MessageID, k, err)
			}
			m.EnqueuedAt = t
		case strings.HasPrefix(k, queue.ReservedPrefix):
			// another adapter's bookkeeping: not the caller's
		case dead && (k == sbDeadLetterReason || k == sbDeadLetterDescription):
			// shown as DeadLetterReason / DeadLetterDescription
		default:
			if m.Properties == nil {
				m.Properties = make(map[string]string, len(rm.ApplicationProperties))
			}
			m.Properties[k] = s
		}
	}
	return m, nil
}

// rescheduleCopy is the message Reschedule schedules in place of m.
//
// Its broker MessageId is the ID plus the original's sequence number: a
// fresh one, so duplicate detection (on for the deployed queue, window
// 10 min) does not drop it as a repeat of the original Send, yet the same one
// when a crash makes us reschedule the same delivery twice, so duplicate
// detection drops that repeat. The logical ID, the deliveries so far and the
// first enqueue time travel in reserved properties.
func rescheduleCopy(m *queue.Message, seq int64) *azservicebus.Message {
	id := m.ID + "~" + strconv.FormatInt(seq, 10)
	props := make(map[string]any, len(m.Properties)+3)
	for k, v := range m.Properties {
		props[k] = v
	}
	props[propID] = m.ID
	props[propDeliveries] = strconv.Itoa(m.DeliveryCount)
	if !m.EnqueuedAt.IsZero() {
		props[propEnqueuedAt] = m.EnqueuedAt.UTC().Format(time.RFC3339Nano)
	}
	body := m.Body
	if body == nil {
		body = []byte{}
	}
	return &azservicebus.Message{MessageID: &id, Body: body, ApplicationProperties: props}
}
