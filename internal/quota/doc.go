// Package quota admits requests against per-key, per-app and per-team
// limits (requests and tokens per window, tokens per UTC calendar month)
// that hold across every gateway instance, without a table round trip on
// the request path (issue 4).
//
// # Algorithm
//
// Admit and Settle work on in-memory counters under one mutex. Each
// instance keeps, per subject and window, its own cumulative count (settled
// usage plus the estimates of requests still in flight) and the other
// instances' total as last read. Admit lets a request in when, for every
// limited subject, others + mine + estimate <= limit and the local share
// allows it; Settle replaces the estimate with the reported usage in the
// window the request was admitted in.
//
// Run syncs every limits.syncInterval (default 1 s). For every subject
// counted here it reads the rows of the current window with one partition
// range query and sums the others; then, when its count or its ceiling
// (see Overshoot bound) changed, it upserts this instance's own row of the
// window and month, RowKey "<window>|<instance id>", with its cumulative
// counts, in one entity-group transaction (one partition per subject).
// Months are read every limits.monthSyncInterval (default 10 s). Idle
// subjects cost nothing.
//
// Why per-instance rows rather than an ETag read-modify-write of one row:
// a cumulative upsert is idempotent, so a write whose reply was lost (the
// server applied it, the client saw a network error) is simply written
// again with the newer total and never counted twice; instances never
// conflict, so there are no 412 retry storms (Azurite: about 4 conflicts
// per success with 8 writers on one entity). It costs one write and one
// read per subject and interval, the same as an uncontended
// read-modify-write, and fewer than a contended one.
//
// # Overshoot bound
//
// Without the share rule, instances that cannot see each other's last
// admissions overshoot a limit by at most instances × (admitted rate per
// instance) × syncInterval. The share rule makes it much smaller: after a
// read, an instance admits at most remaining / (2 × writers) until its
// next read (all of it when it is the only writer), where writers is the
// number of instances with a row in the window (at least the previous
// window's count; a new subject starts from the number of live instances
// in the heartbeat partition).
//
// Ceilings. The share alone did not bound the overshoot: each instance
// computed its remaining from the others' counts, which miss what the
// others admitted on their own current shares and not yet pushed, so the
// shares in flight were each computed from a different, too large,
// remaining. With reads slower than the sync interval (a loaded machine,
// or every table call 0-150 ms slower in TestSlowStoreBound) windows ended
// at 106-115% of the limit. So a rate window row also holds the instance's
// ceiling (CeilTokens, CeilRequests): its count at its last read plus the
// share that read grants. Readers compute their remaining from each other
// row's larger of count and ceiling, and a read's share comes in force
// only once the row with its ceiling is written (the previous share
// applies meanwhile, and the ceiling written is the larger of the two). An
// instance alone (writers 1) reserves nothing, so a new instance is never
// shut out by a reservation of the whole limit. The global check
// (others + mine + request <= limit) uses the counts.
//
// The bound, per window and subject, with n instances and r the largest
// request:
//
//	admitted <= limit + n × r + Σ D / (2n)
//
// Every instance admits within the ceiling the others can read, except one
// request per read: the end-game draw (when the share is smaller than one
// request it is taken with probability remaining / (2n × request), so the
// remainder is used without a stampede) and a request larger than
// limit / n (taken as the first after a read when it fits the global
// check, so big requests are never starved): n × r. The sum of the
// ceilings exceeds the limit only when renewals overlap: an instance whose
// others' ceilings grew by D between its read and its write grants itself
// a share computed without D, which adds at most D / (2n) above the limit
// (its new ceiling is its count plus (limit − others' ceilings as read −
// its count) / 2n). D is made of the others' shares, each at most
// remaining / 2n, so near the limit, the only place where the sum can
// reach it, D / 2n is below one request while the others renew at most
// twice during one of its renewals. Add the error of the writer estimate
// (writers counts rows; a new instance is seen at its first row or
// heartbeat). Measured (TestSlowStoreBound: 4 instances at 3× a key's RPM
// of 100, 2 s window, 100 ms sync, every table call 0-100 ms slower, with
// -race on a machine at a load average of 20-25): 97-104 requests per
// window, bound 105; the same test before the ceilings: 102-107. The
// cost is convergence speed: a share is used after a read and a write, and
// the others' unused shares are reserved, so reaching 90% of a limit takes
// about 5 sync rounds per window (TestMultiInstance).
//
// Estimates are reserved at admission and corrected at settlement, so a
// window whose requests used more than their estimate can end above the
// limit by that difference; the next requests then see the truth.
//
// # Store outages
//
// When the table does not answer, counts stay in memory and are pushed when
// it is back (nothing is lost: rows hold cumulative counts). failMode open
// (default) keeps admitting with the last totals read and this instance's
// share; closed answers 503 quota_unavailable. The outage is logged once
// when it starts, then once per window, and once when it ends.
//
// # Tables
//
// Counters: PartitionKey "<kind>:<escaped id>" (kind key, app or team; the
// id keeps letters, digits, - _ . @ and encodes any other byte as ~XX),
// RowKey "<window>|<instance>" where window is m:<yyyymmddHHMM> for 60 s
// windows, w<secs>:<window index since the epoch> for other lengths, and
// mo:<yyyymm> for the month; columns Tokens, Requests (Int64) and
// WindowStart (DateTime); rate window rows also CeilTokens, CeilRequests
// (Int64, the ceilings above; rows without them count as their counts). The global count of a window is the sum of its
// rows. Partition "instances" holds one heartbeat row per instance (Seen).
// Old windows are never read again; Cleanup deletes rows older than a date.
//
// Limits: per-subject overrides, see [Overrides].
//
// It depends on config, httperr, openai, usage and the store contract;
// never on the request path (handlers, proxy, route, auth) or a store
// implementation.
package quota
