// Package bench is pollgrid's process-level benchmark suite (`make bench`,
// issue 8): every process under measurement is a real OS process
// (nats-server, redis-server, each pollgrid service, the raw-loop baseline,
// the local upstream), its CPU is read from /proc/<pid>/stat over the
// measurement window and its RSS from /proc/<pid>/status, each run starts on
// a quiet machine with fresh servers, and the results land in
// docs/benchmarks.md as medians with min and max over the repetitions.
//
// The scenarios are Go tests behind the build tag "bench" (TestBench in
// suite_test.go), so `make test` never runs them; the files without the tag
// are the instrument (reading /proc, waiting for a quiet machine, medians,
// the markdown writer, the analysis of poll times), whose own unit tests do
// run in `make test`. The helper programs are main packages of their own:
// upstream (the local HTTP API the connectors poll) and rawloop (the
// hand-written baseline doing the same cycle with no framework).
package bench
