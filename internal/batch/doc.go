// Package batch serves the OpenAI Batch API over the low-priority queue:
// files (upload, list, read, delete; kept in blob storage, their rows in
// the BatchFiles table) and batches (create, read, list, cancel; rows in
// the Batches table). Its one job is the batch state machine: creating a
// batch validates every input line under the caller's scope, and
// [Service.Advance], run before each drain round, queues the valid lines
// as low-priority jobs with ids derived from the batch and the line (so a
// re-run after a crash queues, runs and bills nothing twice), counts their
// states into the batch's status and request_counts, and writes the output
// and error files (JSONL in OpenAI's batch output format, in input order).
//
// It depends on jobs (the line jobs), store and blob through small
// interfaces declared here; never on handlers.
package batch
