// Package chaos is pollgrid's fault suite: real nats-server and redis-server
// processes, the scheduler, three workers and the aggregator as OS
// processes, an upstream whose items change on a schedule, and a recorder
// of SIGNALS that checks, after every scenario, that no signal is
// duplicated, no version is skipped, every connector is polled within its
// interval plus the failover bound, and cursors only move forward.
//
// Its ordinary-life part (ordinary_test.go) needs no fault: outages of an
// upstream, a 429 storm, a pause, an item that changes back, ids with
// separators, a 50,000-item listing; every scenario's connectors side by
// side on a stack of their own, each checked for every change in SIGNALS
// once, nothing re-published, no crash-loop verdict, and a poll when the
// back-off ends.
//
// `make test` runs a short version (a few fault scenarios, asserting what
// does not depend on timing, and the ordinary-life part); `make chaos` runs
// every scenario at full length and writes the measured tables into
// docs/reliability.md. `go test -run TestChaos/ordinary ./chaos` runs the
// ordinary-life part alone, `-run TestChaos/faults` the faults.
package chaos
