// Package store keeps pollgrid's shared state in Redis: the per-connector
// lease with its fencing token, the poll state (cursor, validators, failures),
// what is remembered of the items already seen, and the aggregator's metrics.
//
// # Key layout
//
// Every key of one connector carries the connector name as a Redis Cluster
// hash tag, so they share a slot and one Lua script may touch them all:
//
//	<prefix>:{<name>}:lease    string "<owner>:<token>", PX = lease TTL
//	<prefix>:{<name>}:fence    integer: the last fencing token, max(fence+1, Redis's
//	                           clock in µs) on every Acquire; never expires
//	<prefix>:{<name>}:state    hash: cursor etag last_modified last_poll last_success
//	                           consecutive_failures last_error not_before not_before_by
//	                           attempts (polls begun since the last commit), seen_sweep
//	                           seen_swept (the age sweep's HSCAN cursor and the day of its
//	                           last whole pass); and the operator's paused_at paused_by
//	                           resumed_at generation, which only the admin verbs write
//	                           (admin.go)
//	<prefix>:{<name>}:seen     hash: item id -> "<seq>:<day>:<version>" (SeenEntry; an
//	                           empty version is a deleted item's tombstone)
//	<prefix>:{<name>}:seen_data hash: item id -> its last data, for a connector that
//	                           publishes deletions
//	<prefix>:{<name>}:metrics  hash: type polls successes failures skipped items_fetched
//	                           items_published items_failed last_poll last_success
//	                           last_error last_error_at; latency (the last LatencyWindow
//	                           durations, 4-byte big-endian microseconds, newest first);
//	                           rollup_minute (the latest minute bucket written, unix s)
//	<prefix>:{<name>}:recent   list: PollReport as binary protobuf, newest first,
//	                           RecentKept long (up to 20 more between trims), PX = RecentTTL
//	<prefix>:{<name>}:rollup:1m:<unix s of the hour>  hash: minute in the hour (0-59) ->
//	                           bucket; PXAT = end of the hour + 24h, set when the hour closes
//	<prefix>:{<name>}:rollup:1h:<unix s of the day>   hash: hour in the day (0-23) ->
//	                           bucket; PXAT = end of the day + 30 days
//
// A rollup bucket sums the reports that started in it: "successes,failures,
// skipped,items_fetched,items_published,items_failed,latency_sum_us,
// latency_max_us" (latency over the polls that ran). The connector's open
// hour, that of rollup_minute, has minute buckets only; the first report of a
// later hour closes it into its hour bucket (see recordLua). Each rollup hash holds
// at most 60 short fields and so stays a listpack; a connector holds at most
// 26 minute hashes and 31 hour hashes whatever its poll rate, which bounds
// its report history at about 100 KB (see RecordReports and
// docs/benchmarks.md).
//
// Global keys (each in its own slot):
//
//	<prefix>:connectors        set of the connector names the aggregator has seen
//	<prefix>:leader:<role>     string owner, PX = leader TTL
//
// Times are stored as unix milliseconds in decimal; a missing field is a zero time.
//
// # Fencing
//
// A lease only keeps two workers from polling at once while clocks and pauses
// behave. Correctness does not rest on it: every Acquire takes a new token
// from the connector's fence counter, and Commit writes only when the fence
// still equals the lease's token, so a worker that was paused past its lease
// and overtaken by another cannot overwrite the newer state.
//
// The Lua scripts use only commands that miniredis v2.40 (the one-process dev
// stack) also implements.
package store
