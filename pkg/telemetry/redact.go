package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pollgrid/pollgrid/pkg/redact"
)

// NewRedactingProcessor hands next a redacted copy of every ended span:
// secrets the Redactor knows and credentials in URLs (userinfo passwords,
// token-like query parameters, see redact.URL) are masked in the span name,
// string attributes, status description, event names and event attributes,
// and link attributes.
//
// Spans are redacted where they leave the process rather than where they are
// made, because some are made by code we do not control: otelhttp puts the
// whole request URL in url.full, and a connector may carry its API key in
// the query string.
func NewRedactingProcessor(next sdktrace.SpanProcessor, r *redact.Redactor) sdktrace.SpanProcessor {
	return redactingProcessor{next: next, r: r}
}

type redactingProcessor struct {
	next sdktrace.SpanProcessor
	r    *redact.Redactor
}

func (p redactingProcessor) OnStart(parent context.Context, s sdktrace.ReadWriteSpan) {
	p.next.OnStart(parent, s)
}

func (p redactingProcessor) OnEnd(s sdktrace.ReadOnlySpan) { p.next.OnEnd(redactedSpan{s, p.r}) }

func (p redactingProcessor) Shutdown(ctx context.Context) error   { return p.next.Shutdown(ctx) }
func (p redactingProcessor) ForceFlush(ctx context.Context) error { return p.next.ForceFlush(ctx) }

// redactedSpan overrides what may carry a secret; everything else (ids,
// times, kind, linked span contexts, resource) comes from the span as is.
type redactedSpan struct {
	sdktrace.ReadOnlySpan
	r *redact.Redactor
}

func (s redactedSpan) Name() string { return s.text(s.ReadOnlySpan.Name()) }

func (s redactedSpan) Attributes() []attribute.KeyValue { return s.attrs(s.ReadOnlySpan.Attributes()) }

func (s redactedSpan) Status() sdktrace.Status {
	st := s.ReadOnlySpan.Status()
	st.Description = s.text(st.Description)
	return st
}

func (s redactedSpan) Events() []sdktrace.Event {
	events := s.ReadOnlySpan.Events()
	out := make([]sdktrace.Event, len(events))
	for i, e := range events {
		e.Name = s.text(e.Name)
		e.Attributes = s.attrs(e.Attributes)
		out[i] = e
	}
	return out
}

func (s redactedSpan) Links() []sdktrace.Link {
	links := s.ReadOnlySpan.Links()
	if len(links) == 0 {
		return links
	}
	out := make([]sdktrace.Link, len(links))
	for i, l := range links {
		l.Attributes = s.attrs(l.Attributes)
		out[i] = l
	}
	return out
}

func (s redactedSpan) text(v string) string { return s.r.String(redact.URLsIn(v)) }

func (s redactedSpan) attrs(in []attribute.KeyValue) []attribute.KeyValue {
	out := make([]attribute.KeyValue, len(in))
	for i, kv := range in {
		switch kv.Value.Type() {
		case attribute.STRING:
			kv.Value = attribute.StringValue(s.text(kv.Value.AsString()))
		case attribute.STRINGSLICE:
			vs := kv.Value.AsStringSlice()
			for j := range vs {
				vs[j] = s.text(vs[j])
			}
			kv.Value = attribute.StringSliceValue(vs)
		}
		out[i] = kv
	}
	return out
}
