// Package history keeps the aggregator's view of the polls in Redis: each
// connector's counters and latency window (Metrics, AllMetrics), its latest
// reports whole (Recent), and per-minute and per-hour rollups (Rollups), all
// written by RecordReports from batches of poll reports.
//
// # Keys
//
// A connector's keys follow store.Keys: its name is their hash tag, so they
// share a slot with its lease and state and one script may touch them all:
//
//	<prefix>:{<name>}:metrics  hash: type polls successes failures skipped
//	                           items_fetched items_published items_failed last_poll
//	                           last_success last_error last_error_at; latency (the
//	                           last LatencyWindow durations, 4-byte big-endian
//	                           microseconds, newest first); rollup_minute (the
//	                           latest minute bucket written, unix s)
//	<prefix>:{<name>}:recent   list: PollReport as binary protobuf, newest first,
//	                           RecentKept long (up to 20 more between trims),
//	                           PX = RecentTTL
//	<prefix>:{<name>}:rollup:1m:<unix s of the hour>  hash: minute in the hour
//	                           (0-59) -> bucket; PXAT = end of the hour + 24h, set
//	                           when the hour closes
//	<prefix>:{<name>}:rollup:1h:<unix s of the day>   hash: hour in the day (0-23)
//	                           -> bucket; PXAT = end of the day + 30 days
//
// and one global key:
//
//	<prefix>:connectors        set of the connector names whose reports were
//	                           recorded (AllMetrics reads it)
//
// Times are unix milliseconds in decimal (store.ParseTime), a missing field
// a zero time.
//
// A rollup bucket sums the reports that started in it: "successes,failures,
// skipped,items_fetched,items_published,items_failed,latency_sum_us,
// latency_max_us" (latency over the polls that ran). The connector's open
// hour, that of rollup_minute, has minute buckets only; the first report of a
// later hour closes it into its hour bucket, and Rollups adds the open hour
// when it reads hours. Each rollup hash holds at most 60 short fields and so
// stays a listpack; a connector holds at most 26 minute hashes and 31 hour
// hashes whatever its poll rate, which bounds its report history at about
// 100 KB (docs/benchmarks.md).
//
// # Script
//
// recordLua (RecordReports) is the one script: one call per connector of a
// batch, whose reports RecordReports sums in Go first, in one pipeline with
// an SADD of the connectors set. It adds the counters and moves last_poll,
// last_success and last_error_at only forward (HMGET, HSET of metrics),
// prepends the batch's durations to the latency window, LPUSHes the newest
// RecentKept reports (PEXPIRE of a new list; LTRIM and PEXPIRE once it is 20
// past RecentKept), adds to the minute buckets (HMGET of those that may be
// written already, HSET), closes the open hour into its hour bucket when a
// later hour arrives (HGETALL of its minutes, HSET of the hour, PEXPIREAT of
// both), and adds a late report's hour to its hour bucket at once. It uses
// only HMGET HSET HGETALL LPUSH LTRIM PEXPIRE PEXPIREAT, which miniredis (the
// one-process dev stack) implements too. Its comment in record_lua.go gives
// its KEYS and ARGV.
//
// Every counter is a sum and every "last" time only moves forward, so
// batches written out of order, or by several aggregator replicas, agree.
package history
