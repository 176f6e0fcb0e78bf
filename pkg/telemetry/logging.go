// Package telemetry sets up what every service reports about itself: JSON
// logs that carry trace ids and never secrets, OpenTelemetry tracing, and the
// Prometheus registry.
package telemetry

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/pollgrid/pollgrid/pkg/redact"
)

// ParseLevel reads LOG_LEVEL (debug, info, warn, error); default info.
func ParseLevel(s string) slog.Level {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// Log formats: LOG_FORMAT.
const (
	// LogJSON is one JSON object a line, for log collectors (the default).
	LogJSON = "json"
	// LogText is slog's key=value lines, for a person reading a terminal.
	LogText = "text"
)

// NewLogger returns a logger in format (LogJSON or LogText) that adds
// trace_id and span_id from the context of every record and redacts the
// secrets r knows.
func NewLogger(w io.Writer, level slog.Level, format string, r *redact.Redactor, service string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if format == LogText {
		h = slog.NewTextHandler(w, opts)
	}
	h = traceHandler{h}
	h = redact.NewHandler(h, r)
	return slog.New(h).With("service", service)
}

// traceHandler adds the span context of the record's context, and the
// attributes ContextWithLogAttrs put there.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, rec slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		rec.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	if attrs, ok := ctx.Value(logAttrsKey{}).([]slog.Attr); ok {
		rec.AddAttrs(attrs...)
	}
	return h.Handler.Handle(ctx, rec)
}

type logAttrsKey struct{}

// ContextWithLogAttrs returns ctx carrying attrs that every record logged
// with it (slog's *Context methods) gets, whichever logger logs it: the
// worker puts the connector name and type there, so a connector's own log
// lines inside a poll name the connector without knowing it.
func ContextWithLogAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	prev, _ := ctx.Value(logAttrsKey{}).([]slog.Attr)
	return context.WithValue(ctx, logAttrsKey{}, append(append([]slog.Attr(nil), prev...), attrs...))
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
