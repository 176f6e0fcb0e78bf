// Package leader elects one replica of a replicated role (the scheduler)
// with a leader lease in Redis.
//
// # Key
//
//	<prefix>:leader:<role>     string: the leader's owner id, PX = the leader TTL
//
// The prefix is the deployment's (store.Keys.Global); the key is global, in
// a slot of its own.
//
// # Scripts
//
// leaderLua (Acquire) takes the lease with SET NX PX, or, when owner already
// holds it, renews it with PEXPIRE: 1 when owner leads, 0 when another does.
// Resign runs store.ReleaseLua, the connector lease's release: it deletes the
// lease only while owner holds it, so that a replica that lost the lead
// cannot remove its successor's.
//
// Nothing is fenced here: a role led by this lease must stay harmless when
// two replicas briefly both believe they lead (the scheduler's schedules are
// idempotent).
package leader
