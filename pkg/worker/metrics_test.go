package worker

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
)

func durationExemplars(t *testing.T, reg *prometheus.Registry) []string {
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var ids []string
	for _, mf := range mfs {
		if mf.GetName() != "pollgrid_poll_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, b := range m.GetHistogram().GetBucket() {
				if ex := b.GetExemplar(); ex != nil {
					for _, l := range ex.GetLabel() {
						if l.GetName() == "trace_id" {
							ids = append(ids, l.GetValue())
						}
					}
				}
			}
		}
	}
	return ids
}

func TestPollDurationExemplarIsTheSampledTraceID(t *testing.T) {
	traceID := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	sc := func(flags trace.TraceFlags) context.Context {
		return trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: traceID, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: flags}))
	}

	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	m.observeDuration(sc(0), "feed", 300*time.Millisecond)
	assert.Empty(t, durationExemplars(t, reg), "an unsampled trace leads nowhere: no exemplar")

	m.observeDuration(sc(trace.FlagsSampled), "feed", 300*time.Millisecond)
	assert.Equal(t, []string{traceID.String()}, durationExemplars(t, reg))
}
