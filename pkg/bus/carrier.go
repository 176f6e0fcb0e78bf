package bus

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// HeaderCarrier adapts nats.Header to OpenTelemetry's TextMapCarrier. Keys
// are lowercase on the wire ("traceparent", "tracestate"), as W3C and
// CloudEvents expect.
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string {
	if v := c[strings.ToLower(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces key's values.
func (c HeaderCarrier) Set(key, value string) { c[strings.ToLower(key)] = []string{value} }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// The W3C trace context headers, and their CloudEvents binary-mode names.
const (
	traceparentHeader   = "traceparent"
	tracestateHeader    = "tracestate"
	ceTraceparentHeader = "ce-traceparent"
	ceTracestateHeader  = "ce-tracestate"
)

// InjectSignalTrace puts the trace context of ctx (the signal's publish
// span) in a signal's headers, under two names with the same values:
//
//   - traceparent and tracestate, the W3C headers an OpenTelemetry
//     propagator reads from a NATS message (what a consumer that traces
//     itself extracts);
//   - ce-traceparent and ce-tracestate, the CloudEvents Distributed Tracing
//     extension in binary mode (the NATS binding maps every attribute,
//     extensions included, to a ce- header), which CloudEvents SDKs hand
//     to a consumer as the event's traceparent extension. On a single hop
//     the extension carries the same context as the protocol's headers.
//
// Whatever else prop injects (baggage) goes under its own name only.
func InjectSignalTrace(ctx context.Context, prop propagation.TextMapPropagator, h nats.Header) {
	prop.Inject(ctx, HeaderCarrier(h))
	if v := HeaderCarrier(h).Get(traceparentHeader); v != "" {
		h[ceTraceparentHeader] = []string{v}
	}
	if v := HeaderCarrier(h).Get(tracestateHeader); v != "" {
		h[ceTracestateHeader] = []string{percentEncode(v)}
	}
}

// percentEncode escapes a CloudEvents attribute for a NATS header as the
// NATS binding asks: space, double quote, percent and anything outside
// printable ASCII become %XX of their UTF-8 bytes. A traceparent never
// needs it; a tracestate may hold spaces.
func percentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	plain := func(c byte) bool { return c > ' ' && c < 0x7f && c != '"' && c != '%' }
	i := 0
	for i < len(s) && plain(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		if c := s[i]; plain(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
		}
	}
	return string(b)
}

// ReportCarrier adapts a poll report's traceparent and tracestate fields to
// OpenTelemetry's TextMapCarrier: a worker injects the poll's span context
// into its report, and whoever reads the report extracts it to link to the
// poll. Other keys (baggage) are not carried.
type ReportCarrier struct{ Report *pollgridv1.PollReport }

// Get returns the report's traceparent or tracestate.
func (c ReportCarrier) Get(key string) string {
	switch strings.ToLower(key) {
	case traceparentHeader:
		return c.Report.GetTraceparent()
	case tracestateHeader:
		return c.Report.GetTracestate()
	}
	return ""
}

// Set sets the report's traceparent or tracestate; other keys are dropped.
func (c ReportCarrier) Set(key, value string) {
	switch strings.ToLower(key) {
	case traceparentHeader:
		c.Report.Traceparent = value
	case tracestateHeader:
		c.Report.Tracestate = value
	}
}

// Keys lists the trace context fields the report holds.
func (c ReportCarrier) Keys() []string {
	var keys []string
	if c.Report.GetTraceparent() != "" {
		keys = append(keys, traceparentHeader)
	}
	if c.Report.GetTracestate() != "" {
		keys = append(keys, tracestateHeader)
	}
	return keys
}

// InjectReportTrace stamps a report with the poll's trace: its trace id (for
// people and logs) always, and the span context of ctx (for links) when the
// poll is sampled. An unsampled poll's span is exported nowhere: a link to it
// would lead nowhere, and the bytes would ride along for nothing.
func InjectReportTrace(ctx context.Context, prop propagation.TextMapPropagator, r *pollgridv1.PollReport) {
	sc := trace.SpanContextFromContext(ctx)
	r.TraceId = sc.TraceID().String()
	if sc.IsValid() && sc.IsSampled() {
		prop.Inject(ctx, ReportCarrier{r})
	}
}
