// Package ledger records what every inference call used and cost, for
// finance: one UsageEvents row per call, written off the request path in
// entity group transactions, spooled to a local file while the store is
// down, rolled up into the UsageDaily table, and read back as reports.
//
// # Tables
//
//   - UsageEvents: PartitionKey "yyyy-mm-dd|team", RowKey the request id.
//     Rows are upserted, so writing an event twice (a retried flush, a spool
//     replay) leaves one row.
//   - UsageIndex: PartitionKey "yyyy-mm-dd", RowKey team: which event
//     partitions a day has, so a day is read without a table scan.
//   - UsageDirty: PartitionKey "dirty", RowKey "yyyy-mm-dd": past days that
//     received events after they ended; the rollup recomputes them.
//   - UsageDaily: PartitionKey "yyyy-mm", RowKey "date|team|app|model|class":
//     the finance table, recomputed from UsageEvents (idempotent).
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
