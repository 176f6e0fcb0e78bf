// Package store keeps, in Redis, what a poll of one connector reads and
// commits: its lease with its fencing token, its state (cursor, validators,
// failures, back-off), and what is remembered of the items it has seen; the
// operator's writes on that same state (pause, resume, reset: admin.go); and
// the epoch of Redis's data, by which the services notice that it was lost
// or went back in time (epoch.go).
//
// The key layout, a prefix and each connector's name as a hash tag, is
// declared once, in Keys; package history (the aggregator's metrics and
// rollups) and package leader (the scheduler's leader lease) keep their keys
// in the same layout, beside these.
//
// # Keys
//
// Every key of one connector carries the connector name as a Redis Cluster
// hash tag (Keys.Connector), so they share a slot and one Lua script may
// touch them all:
//
//	<prefix>:{<name>}:lease     string "<owner>:<token>", PX = lease TTL
//	<prefix>:{<name>}:fence     integer: the last fencing token, never expires
//	<prefix>:{<name>}:state     hash: cursor etag last_modified last_poll
//	                            last_success consecutive_failures last_error
//	                            not_before not_before_by, which Commit writes whole;
//	                            attempts (polls begun since the last commit: Acquire
//	                            adds one, Commit sets 0); seen_sweep seen_swept
//	                            (the age sweep's HSCAN cursor and the day its last
//	                            whole pass ended); committed (the token of the
//	                            lease whose Commit wrote the state last: see
//	                            Carried state, below); and the operator's
//	                            paused_at paused_by resumed_at generation, which
//	                            only the admin verbs write
//	<prefix>:{<name>}:seen      hash: item id -> "<seq>:<day>:<version>" (SeenEntry;
//	                            an empty version is a deleted item's tombstone; a
//	                            bare version, as releases before sequences wrote it,
//	                            reads as sequence 1, day 0)
//	<prefix>:{<name>}:seen_data hash: item id -> its last data, for a connector
//	                            that publishes deletions
//	<prefix>:{<name>}:seen_at   what releases before the day in the seen entry
//	                            wrote: only deleted (by a fetched Commit and by Reset)
//
// Two global keys hold the epoch (epoch.go); the second carries the first as
// its hash tag, so both are in one slot:
//
//	<prefix>:epoch              string: a random id (32 hex digits) of this
//	                            Redis's data, written once, never expires
//	{<prefix>:epoch}:progress   integer: one more on every Progress call
//
// Times are stored as unix milliseconds in decimal; a missing field is a zero
// time (ParseTime).
//
// # Scripts
//
//   - acquireLua (Acquire; Reset takes its lease with it too): when the lease
//     exists, answers its PTTL and writes nothing. A tick (ClaimTick) of a
//     connector with paused_at, or with a not_before later than Redis's
//     clock, takes no lease and writes nothing either. Otherwise the new
//     token is max(fence+1, Redis's clock in microseconds), written to fence
//     and into the lease (SET PX); a poll (ClaimTick, ClaimTrigger) adds one
//     to attempts. It answers the token, the state hash and the number of
//     seen items, with the seen items themselves when there are at most
//     PrefetchSeen; or, told the token of the commit whose state the caller
//     carries (AcquireCarried) while the fence and committed both still
//     hold it, the token, attempts and the operator's fields alone.
//   - renewLua (Renew): PEXPIRE of the lease while it still holds this
//     "<owner>:<token>".
//   - ReleaseLua (Release; package leader resigns with it too): DEL of the
//     lease while it still holds this "<owner>:<token>".
//   - commitLua (Commit): writes nothing unless fence still equals the
//     lease's token. Then it writes the state fields ("" deletes one),
//     forgets the items of Commit.Forget (seen and seen_data), writes the
//     seen entries and data, and, for a fetched poll, sweeps: HSCAN of
//     SweepStep seen entries from seen_sweep, forgetting those whose day is
//     before today less SeenTTL, a new pass begun at most once a day
//     (seen_swept), and DEL of seen_at. It sets committed to the token.
//     Last it deletes the lease if it still holds this one, and answers
//     how many items are remembered.
//   - pauseLua (Pause): HSETNX paused_at, then paused_by and HDEL
//     committed, on the state.
//   - resumeLua (Resume): HDEL paused_at paused_by committed, HSET resumed_at.
//   - resetLua (Reset, under a lease taken with ClaimAdmin): fenced like
//     commitLua; HDEL cursor etag last_modified seen_sweep seen_swept
//     committed, DEL
//     seen seen_data seen_at, HINCRBY generation, and it deletes the lease.
//   - progressLua (Progress): SET of the epoch when there is none, INCR of the
//     progress counter; answers both.
//
// # Fencing
//
// A lease only keeps two workers from polling at once while clocks and pauses
// behave. Correctness does not rest on it: every Acquire takes a greater
// token, and Commit (and Reset) write only while the fence still equals the
// lease's token, so a worker that was paused past its lease and overtaken by
// another cannot overwrite the newer state. Tokens follow Redis's clock, so
// they still grow after Redis lost its data, and a token from before the loss
// stays fenced.
//
// # Carried state
//
// A poll costs two round trips: the acquire and the commit. Nothing else
// of an ordinary poll goes to Redis: the seen items of a connector that
// remembers at most PrefetchSeen come with the state, a commit writes the
// state, the seen items and the release at once, and a heartbeat renews
// only a poll longer than a quarter of its lease. (A connector on a
// budget adds a draw per upstream request: package budget, another slot.)
//
// Fewer is not to be had without giving up a guarantee. The two are the
// two moments other workers must be ordered against: the start of the
// poll, which must be alone (one poll at a time, a paused connector not
// polled, state read as the last commit left it), and its end, which must
// be written before the tick is acked. The end of one poll and the start
// of the next are an interval apart. Writing them together means either
// holding the lease over the interval (another worker's tick then waits
// for it, and a pause in between is not seen before the poll) or
// committing only at the next poll (a commit lost with the worker, and a
// state read stale by the worker the next tick goes to).
//
// What the next acquire can skip is sending the state back. A Commit
// answers how many items are remembered, so the lease knows the state and
// the seen items as written (Lease.Carry: a Carried, which the worker keeps
// with the connector). The next acquire passes the commit's token
// (AcquireCarried); the script answers with the new token, the attempts
// and the operator's fields alone when the fence still equals that token
// (no one took the lease since: every acquire moves the fence) and so does
// the state's committed field (no one wrote the state since: pause,
// resume and reset delete it; a Redis that lost its data lost it too).
// Otherwise it answers as for anyone, and the caller reads the state
// that is there. A commit whose sweep forgot items by age, or whose answer
// was lost, carries nothing.
//
// A Commit sends only the state fields that differ from those its lease
// read (and attempts, set back to 0): while the fence equals the lease's
// token no one else wrote them, so the state stays whole.
//
// The Lua scripts use only commands that miniredis v2.40 (the one-process dev
// stack) also implements.
package store
