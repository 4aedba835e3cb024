// Package jobs runs low-priority requests: Submit records a job (Jobs
// table, status queued) and puts the request on the queue; Drain, called by
// the drain timer function, takes messages while the model pools have spare
// capacity, forwards them like the synchronous path, stores the result and
// settles the message. Every step is idempotent per job id, because the
// queue delivers at least once.
//
// It depends on store, queue (through the small interfaces declared here),
// route and proxy types; never on handlers.
package jobs
