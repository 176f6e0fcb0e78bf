// Package history keeps the aggregator's view of the polls in Redis: each
// connector's counters and latency window (Metrics, AllMetrics), its latest
// reports (Recent), and rollups per minute, quarter-hour, hour and day
// (Rollups), all written by RecordReports from batches of poll reports, in a
// bounded size per connector whatever its poll rate: about 0.6 KB after its
// first report, growing to about 15 KB as its rings fill (a month)
// (docs/benchmarks.md).
//
// # Keys
//
// A connector's keys follow store.Keys: its name is their hash tag, so they
// share a slot with its lease and state and one script may touch them all:
//
//	<prefix>:{<name>}:metrics   hash: type polls successes failures skipped
//	                            items_fetched items_published items_failed last_poll
//	                            last_success last_error last_error_at (at most 512
//	                            bytes: a longer error keeps its start and its end)
//	<prefix>:{<name>}:history   string of up to headBytes (518): the head
//	<prefix>:{<name>}:minutes   string of up to 64 slots (2,176 bytes)
//	<prefix>:{<name>}:quarters  string of up to 100 slots (3,400 bytes)
//	<prefix>:{<name>}:days      string of up to 32 slots (1,088 bytes)
//	<prefix>:{<name>}:reports   string of up to recentBytes (6,138)
//
// each history key with PX = HistoryTTL from the last write that opened a
// day (or that created or grew it), and one global key:
//
//	<prefix>:connectors         set of the connector names whose reports were
//	                            recorded (AllMetrics reads it)
//
// Times are unix milliseconds in decimal (store.ParseTime), a missing field
// a zero time.
//
// The head (layout.go has it byte by byte) holds a header (where the
// recent reports are written, where each ring's slots start and how many
// its key holds), each ring's latest ("open") bucket, and the latency
// window (the last LatencyWindow durations of polls that ran, 4-byte
// big-endian microseconds, newest first). The three rings of rollup
// buckets, 64 minutes, 100 quarter-hours and 32 days (UTC), and the ring of
// recent reports (about 6 KB) have a key each, created by the first bucket
// or report they get and grown (doubling) up to their size as the
// connector's history fills: a connector polled every minute holds about
// 0.6 KB after its first poll, 7 KB after an hour and its full 15 KB after
// a month.
//
// A bucket is a fixed-width slot of 34 bytes: the period it holds (4 bytes:
// its start divided by its width) and its sums of the reports that started
// in it, big-endian: successes, failures, skipped (3 bytes each), items
// fetched, published, failed (4 bytes each), latency sum (5 bytes of
// microseconds) and latency max (4 bytes, about 71 minutes), over the polls
// that ran. Each sum saturates at its width's largest value (16.7 million
// polls, 4.29 billion items in one bucket). A ring of n slots holds period
// p in slot (p - shift) mod n, shift being the first period its key got: a
// later period that falls in the slot replaces it (so a stale
// bucket is never summed into a new one), and a report of a period older
// than the slot's is not written there. Readers know a period is past its
// ring when its slot holds a later one, or when it is a ring's worth before
// the open bucket. PerMinute reads the minutes (the last hour), PerQuarterHour
// the quarter-hours (the last day; the status page's chart), PerHour sums
// four quarter-hours (the last day) and PerDay reads the days (30 days).
//
// The recent reports are kept compact: flags and outcome, started_at,
// duration, item counts and fencing token as varints, the worker, the trace
// id (16 bytes when hex) and the error (at most 256 bytes, its start and its
// end), each entry followed by its length. The connector's name and type are
// not repeated (Recent fills them in from the key and the metrics hash);
// traceparent and tracestate are not kept. Recent returns the newest
// RecentKept that are whole in the ring: all 100 for the usual report (about
// 50 bytes), fewer when errors are long (20 with errors of 256 bytes or
// more: still the 20 a connector's page lists and the 10 pollctl status
// prints). That bound is the price of a fixed size: 100 reports with 2 KB
// errors would be 200 KB.
//
// # Script
//
// recordLua (RecordReports) is the one script: one call per connector of a
// batch, whose reports RecordReports sums in Go first (per ring slot, the
// latest period only), in one pipeline with an SADD of the connectors set.
// It adds the counters and moves last_poll, last_success and last_error_at
// only forward (HMGET, HSET of metrics), and changes the history with
// GETRANGE and SETRANGE of its head, of the slots it writes and of the
// recent reports' ring, and GET and SET of a ring's key only when it grows.
// It uses only HMGET HSET HDEL GET SET GETRANGE SETRANGE PEXPIRE PEXPIREAT
// DEL and string arithmetic (no struct, no bit, no BITFIELD), which
// miniredis (the one-process dev stack)
// implements too. Its comment in record_lua.go gives its KEYS and ARGV.
//
// Every counter and bucket sum is a sum, every "last" time only moves
// forward, and a ring slot holds the latest period written to it whatever
// the order of the writes, so batches written out of order, or by several
// aggregator replicas, agree.
//
// # Earlier layouts
//
// Layout 1 kept the head, the three rings at full size and a recent
// reports' ring of 7,156 bytes in one string of 14,330 bytes, created whole
// at a connector's first report (14.6 KB of Redis a connector from its
// first poll on). A connector's next write moves it over: its rings to
// their keys as they are, the newest of its recent reports that fit the
// new ring, its head to layout 2's. Until then readers see its counters but
// no latency, rollups or recent reports.
//
// Before that, a connector had a recent list (binary protobuf), per-minute
// rollup hashes kept 24 hours and per-hour ones kept 30 days (about 97 KB a
// connector polled every minute), and its latency window and open hour in
// the metrics hash. Nothing reads them now. A connector's first write moves
// it over: its latency window is carried into the head, the latency and
// rollup_minute fields and the recent list are deleted, and its open hour's
// minute hash, the one rollup hash without an expiry, gets the expiry it
// would have had; the other rollup hashes expire on their own (PEXPIREAT),
// within 30 days.
package history
