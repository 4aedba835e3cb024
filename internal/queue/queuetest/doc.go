// Package queuetest is the contract suite every queue.Queue implementation
// must pass, and a fake clock for implementations and consumers that can
// inject one.
//
// The suite works both with a fake clock (no sleeping) and in real time
// against a shared broker entity (Azure Service Bus), where it drains leftovers
// first, tags every message with an ID prefix unique to the run and ignores
// messages it did not send.
//
// It must not depend on any implementation or on the rest of the gateway.
package queuetest
