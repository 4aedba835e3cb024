// Package servicebus is the Azure Service Bus implementation of the queue
// contract, on azservicebus: one sender and two peek-lock receivers (the
// queue and its dead-letter sub-queue) over one AMQP connection, opened
// lazily on first use. It authenticates with a connection string (local runs,
// the Service Bus emulator) or with managed identity (azidentity) against a
// fully qualified namespace.
//
// Lock duration, maximum delivery count, duplicate detection and dead-lettering
// on expiry are entity settings (infra/modules/servicebus.bicep); the adapter
// reads none of them. Reschedule is a scheduled copy plus Complete (see
// Queue.Reschedule), with the logical ID, the delivery count so far and the
// first enqueue time carried in properties under queue.ReservedPrefix.
//
// It must not depend on any other gateway package than queue.
package servicebus
