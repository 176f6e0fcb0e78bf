// Package chaos is pollgrid's fault suite: real nats-server and redis-server
// processes, the scheduler, three workers and the aggregator as OS
// processes, an upstream whose items change on a schedule, and a recorder
// of SIGNALS that checks, after every scenario, that no signal is
// duplicated, no version is skipped, every connector is polled within its
// interval plus the failover bound, and cursors only move forward.
//
// `make test` runs a short version (a few scenarios, asserting what does
// not depend on timing); `make chaos` runs every scenario at full length
// and writes the measured table into docs/reliability.md.
package chaos
