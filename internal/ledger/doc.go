// Package ledger records what every inference call used and cost, for
// finance: one UsageEvents row per call, written off the request path in
// entity group transactions, spooled to a local file while the store is
// down, rolled up into the UsageDaily table, and read back as reports.
//
// # Tables
//
//   - UsageEvents: PartitionKey "yyyy-mm-dd|team", RowKey the request id.
//     Rows are inserted; an event found stored already (a retried flush
//     whose first attempt had committed, a spool replay) is not written or
//     counted again. The same partition holds each writer's partial sums
//     (RowKey "|sum|<instance>.<slot>|app|model|class", see partial.go),
//     written in the same transactions as the events they count.
//   - UsageIndex: PartitionKey "yyyy-mm-dd", RowKey team: which event
//     partitions a day has, so a day is read without a table scan. Partials
//     true: every event of the partition is counted in its partial rows
//     (false or missing: an older gateway wrote it; its events are read).
//   - UsageDirty: PartitionKey "dirty", RowKey "yyyy-mm-dd": past days that
//     received events after they ended; the rollup recomputes them.
//   - UsageDaily: PartitionKey "yyyy-mm", RowKey "date|team|app|model|class":
//     the finance table, the sum of the day's partial rows (idempotent).
//     Rebuild recomputes a day from UsageEvents, streaming.
//
// # Losses
//
// Record never blocks and never drops an event. A graceful stop (Close)
// writes or spools everything. A hard kill loses the events recorded since
// the last flush (at most FlushInterval, 1 s by default), and while the store
// is failing those held in memory for less than SpoolAfter (5 s by default).
//
// It depends on store, store/rules, config and usage; never on handlers or
// on another package's tables.
package ledger
