// Package embedded is the local implementation of the queue contract: a
// durable peek-lock queue in one bbolt file, for development and
// single-instance use. Every state change is one fsynced bbolt transaction,
// so a message Send accepted survives a crash, and a message that was locked
// when the process died is delivered again once its lock expires.
//
// It has no background goroutine: lock expiry, scheduled delivery and the
// maximum delivery count are evaluated lazily, against the injected Clock,
// whenever the queue is used.
//
// It must not depend on the Azure SDK or on any other gateway package than
// queue.
package embedded
