package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pollgrid/pollgrid/pkg/redact"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestSamplerFromEnv(t *testing.T) {
	tests := []struct {
		name, sampler, arg string
		want               string // Sampler.Description()
		wantErr            string
	}{
		{name: "default is parent-based always on", want: "ParentBased{root:AlwaysOnSampler"},
		{name: "parent-based ratio", sampler: "parentbased_traceidratio", arg: "0.25", want: "ParentBased{root:TraceIDRatioBased{0.25}"},
		{name: "ratio without arg is 1", sampler: "traceidratio", want: "TraceIDRatioBased{1}"},
		{name: "case and spaces", sampler: " ParentBased_Always_Off ", want: "ParentBased{root:AlwaysOffSampler"},
		{name: "always off", sampler: "always_off", want: "AlwaysOffSampler"},
		{name: "ratio above 1", sampler: "parentbased_traceidratio", arg: "1.5", wantErr: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "ratio not a number", sampler: "traceidratio", arg: "half", wantErr: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "unknown sampler", sampler: "jaeger_remote", wantErr: `OTEL_TRACES_SAMPLER="jaeger_remote"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			if tt.sampler != "" {
				env["OTEL_TRACES_SAMPLER"] = tt.sampler
			}
			if tt.arg != "" {
				env["OTEL_TRACES_SAMPLER_ARG"] = tt.arg
			}
			s, err := SamplerFromEnv(envOf(env))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(s.Description(), tt.want), "got %s", s.Description())
		})
	}
}

func TestSetupTracingRejectsABadSampler(t *testing.T) {
	_, err := SetupTracing(context.Background(), "svc", TracingOptions{Lookup: envOf(map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"})})
	require.Error(t, err)
}

func TestOTLPEndpoint(t *testing.T) {
	assert.Equal(t, "", otlpTracesEndpoint(envOf(nil)))
	assert.Equal(t, "http://jaeger:4318/v1/traces", otlpTracesEndpoint(envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318/"})))
	assert.Equal(t, "http://x:1/custom", otlpTracesEndpoint(envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:1/custom"})))
}

// With nothing to export to, spans are not recorded but still carry ids:
// logs and signals correlate, and a downstream sees an unsampled parent.
func TestNoExporterRecordsNothingButKeepsIDs(t *testing.T) {
	tp, err := SetupTracing(context.Background(), "svc", TracingOptions{})
	require.NoError(t, err)
	ctx, span := tp.Tracer("t").Start(context.Background(), "process x")
	defer span.End()
	assert.False(t, span.IsRecording())
	sc := trace.SpanContextFromContext(ctx)
	assert.True(t, sc.IsValid())
	assert.False(t, sc.IsSampled())
}

func TestSpansAreRedactedBeforeAnyProcessor(t *testing.T) {
	const secret = "s3cr3t-api-key-value"
	rec := tracetest.NewSpanRecorder()
	r := redact.New(secret)
	tp, err := SetupTracing(context.Background(), "svc", TracingOptions{Redactor: r, Processors: []sdktrace.SpanProcessor{rec}})
	require.NoError(t, err)
	_, span := tp.Tracer("t").Start(context.Background(), "GET "+secret, trace.WithAttributes(
		attribute.String("url.full", "https://api.example.com/v1/items?page=2&api_key=plain-key&token=tok123"),
		attribute.String("user_agent.original", "pollgrid "+secret),
		attribute.StringSlice("list", []string{"a", secret}),
		attribute.Int("http.response.status_code", 500),
	))
	linked := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	span.AddLink(trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{attribute.String("note", "for "+secret)}})
	span.RecordError(errors.New(`Get "https://u:pw@api.example.com/x?sig=zzz": ` + secret))
	span.SetStatus(codes.Error, "failed with "+secret)
	span.End()

	ended := rec.Ended()
	require.Len(t, ended, 1)
	s := ended[0]
	all := s.Name() + s.Status().Description
	attrs := map[string]attribute.Value{}
	for _, kv := range s.Attributes() {
		attrs[string(kv.Key)] = kv.Value
		all += kv.Value.Emit()
	}
	for _, e := range s.Events() {
		for _, kv := range e.Attributes {
			all += kv.Value.Emit()
		}
	}
	require.Len(t, s.Links(), 1)
	assert.Equal(t, linked, s.Links()[0].SpanContext, "a link keeps where it leads")
	for _, kv := range s.Links()[0].Attributes {
		all += kv.Value.Emit()
	}
	for _, leak := range []string{secret, "plain-key", "tok123", "zzz", ":pw@"} {
		assert.NotContains(t, all, leak)
	}
	assert.Equal(t, "https://api.example.com/v1/items?page=2&api_key=[REDACTED]&token=[REDACTED]", attrs["url.full"].AsString())
	assert.Equal(t, "pollgrid [REDACTED]", attrs["user_agent.original"].AsString())
	assert.Equal(t, int64(500), attrs["http.response.status_code"].AsInt64())
	assert.Equal(t, "failed with [REDACTED]", s.Status().Description)
	assert.Equal(t, codes.Error, s.Status().Code)
	assert.Equal(t, "GET [REDACTED]", s.Name())
	assert.Equal(t, span.SpanContext(), s.SpanContext())
}

func TestLogLinesCarryTraceAndContextAttrs(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelInfo, LogJSON, redact.New("hunter2"), "worker")
	rec := tracetest.NewSpanRecorder()
	tp, err := SetupTracing(context.Background(), "svc", TracingOptions{Processors: []sdktrace.SpanProcessor{rec}})
	require.NoError(t, err)
	ctx, span := tp.Tracer("t").Start(context.Background(), "process")
	defer span.End()
	ctx = ContextWithLogAttrs(ctx, slog.String("connector", "noaa-ca"), slog.String("type", "weather-noaa"))
	// A connector's own logger, derived with With, still gets them.
	log.With("connector_type", "weather-noaa").WarnContext(ctx, "page limit", "token", "hunter2")

	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line))
	assert.Equal(t, span.SpanContext().TraceID().String(), line["trace_id"])
	assert.Equal(t, span.SpanContext().SpanID().String(), line["span_id"])
	assert.Equal(t, "noaa-ca", line["connector"])
	assert.Equal(t, "weather-noaa", line["type"])
	assert.Equal(t, "worker", line["service"])
	assert.Equal(t, "[REDACTED]", line["token"])
}

// The decision is the root's: with a ratio of 0 a new trace is dropped, but
// a tick whose traceparent says sampled is traced by the worker too, so a
// trace is whole or absent.
func TestParentBasedRatioFollowsTheTick(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp, err := SetupTracing(context.Background(), "svc", TracingOptions{
		Lookup:     envOf(map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}),
		Processors: []sdktrace.SpanProcessor{rec},
	})
	require.NoError(t, err)
	tr := tp.Tracer("t")
	_, root := tr.Start(context.Background(), "publish tick")
	root.End()
	assert.False(t, root.SpanContext().IsSampled(), "ratio 0: a root is dropped")

	for _, flags := range []string{"01", "00"} {
		tick := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-" + flags}
		ctx := Propagator.Extract(context.Background(), propagation.MapCarrier(tick))
		_, span := tr.Start(ctx, "process tick")
		span.End()
		assert.Equal(t, flags == "01", span.SpanContext().IsSampled(), "parent flags %s", flags)
	}
	require.Len(t, rec.Ended(), 1, "only the child of the sampled tick was recorded")
}

// LOG_FORMAT=text gives key=value lines, with the same attributes and the
// same redaction as JSON.
func TestTextLogLinesAreRedactedToo(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelInfo, LogText, redact.New("hunter2"), "worker")
	ctx := ContextWithLogAttrs(context.Background(), slog.String("connector", "noaa-ca"))
	log.InfoContext(ctx, "poll done", "token", "hunter2", "published", 3)
	line := buf.String()
	assert.Contains(t, line, `level=INFO msg="poll done" service=worker`)
	assert.Contains(t, line, "connector=noaa-ca")
	assert.Contains(t, line, "published=3")
	assert.Contains(t, line, "token=[REDACTED]")
	assert.NotContains(t, line, "hunter2")
	assert.NotContains(t, line, "{", "not JSON")
}
