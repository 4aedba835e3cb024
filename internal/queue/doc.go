// Package queue defines the contract of the low-priority work queue: a
// peek-lock message queue with scheduled delivery, a maximum delivery count
// and a dead-letter queue, the model of an Azure Service Bus queue.
//
// Implementations live in sub-packages (servicebus for Azure Service Bus,
// embedded for a local bbolt file) and must pass the shared suite in
// queuetest. The claim sub-package keeps bodies above Service Bus
// Standard's 256 KB out of messages (a blob reference instead). Consumers
// (the jobs layer and its drain) should declare the few methods they use as
// their own small interface.
//
// Delivery is at least once: a message is removed only by Complete (or moved
// by DeadLetter); a receiver that crashes or stalls loses its lock and the
// message is delivered again with a higher DeliveryCount. Consumers must
// therefore be idempotent per message ID.
//
// This package must not depend on any implementation, on the Azure SDK or on
// the rest of the gateway.
package queue
