// Package audit keeps the audit trail of prompts and completions for the
// teams and models that opt in (issue #19): one record per request (the
// full request body, the full response as the client received it, streams
// included byte for byte, and who, what, where, status, usage and the
// request id), redacted by optional rules, then appended to blob storage
// as append blobs, one set per day and team. It never logs content.
//
// # Never lose a record
//
// Like the usage ledger's writer, a [Writer] takes records without I/O
// (Record), appends them every FlushInterval off the request path, keeps
// them in memory while the blob store fails, moves them to an fsynced
// local spool after SpoolAfter (or MaxBuffered records, or on Close), and
// replays the spool when the store answers again, including at start.
//
// # Exactly once
//
// Each gateway process writes its own blobs,
// <yyyy>/<mm>/<dd>/<team>/<instance>-<n>.jsonl, and appends each block on
// the condition that the blob is the length it expects (the append
// position condition). An append that landed although its answer was
// lost is refused when retried, and the blob's length shows that it
// landed; a block spooled with its blob and position is replayed the same
// way after a restart. So a record is written once, whatever fails.
// (Locally the directory store's files behave the same; a crash in the
// middle of a write can leave a torn last line, which readers skip.)
//
// # Reading
//
// [Lookup] finds one request's record by its id: request ids start with
// their millisecond timestamp, which names the day to read.
//
// It depends on internal/blob's append operations through a small
// interface and knows nothing of HTTP routing or the usage ledger.
package audit
