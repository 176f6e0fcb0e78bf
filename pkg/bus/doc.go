// Package bus is pollgrid's view of NATS: the subjects, the three JetStream
// streams (TICKS, SIGNALS, REPORTS) and their idempotent creation, the wire
// encoding of ticks, signals and poll reports, the carrier that moves W3C
// trace context in NATS headers, and the spans of its messages (trace.go).
package bus
