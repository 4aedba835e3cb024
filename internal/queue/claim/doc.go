// Package claim is the claim check of queue messages: a body larger than a
// threshold is stored as a blob named after the message ID, and the message
// carries only a reference to it (the Property application property), so
// messages stay under Service Bus Standard's 256 KB whatever the request
// size. The receiver loads the body back with Body and deletes the blob
// with Release once the work is finished for good.
//
// It depends on the queue contract and on a small blob interface declared
// here; never on a queue or blob implementation.
package claim
