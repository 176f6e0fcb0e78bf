package redact

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
)

// NewHandler returns a slog.Handler that redacts the message and every
// attribute value before passing the record to inner.
//
// Strings, errors and fmt.Stringers are redacted as text; other values are
// rendered with fmt.Sprint and redacted, except numbers, bools, times and
// durations, which pass through unchanged. Groups are redacted recursively.
// Attributes added with WithAttrs are redacted again whenever the secret
// set changes, so a logger built before a config reload cannot leak a
// secret the reload added.
func NewHandler(inner slog.Handler, r *Redactor) slog.Handler {
	return &handler{base: inner, redactor: r}
}

type handler struct {
	base     slog.Handler
	redactor *Redactor
	// steps are the WithGroup and WithAttrs calls made so far, unredacted,
	// so that they can be replayed on base when the secrets change.
	steps []step
	built atomic.Pointer[builtHandler]
}

// step is one WithGroup (group != "") or WithAttrs call.
type step struct {
	group string
	attrs []slog.Attr
}

// builtHandler is base with the steps applied, redacted against one
// generation of the secret set.
type builtHandler struct {
	generation uint64
	handler    slog.Handler
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.base.Enabled(ctx, level)
}

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.redactor.String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.redactor.attr(a))
		return true
	})
	return h.inner().Handle(ctx, out)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(step{attrs: slices.Clone(attrs)})
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(step{group: name})
}

func (h *handler) with(s step) *handler {
	steps := append(slices.Clip(h.steps), s) // Clip: never share a backing array with h
	return &handler{base: h.base, redactor: h.redactor, steps: steps}
}

// inner returns base with the steps applied, rebuilding it when the
// secret set has changed since the last build.
func (h *handler) inner() slog.Handler {
	if len(h.steps) == 0 {
		return h.base
	}
	generation := h.redactor.load().generation
	if b := h.built.Load(); b != nil && b.generation == generation {
		return b.handler
	}
	in := h.base
	for _, s := range h.steps {
		if s.group != "" {
			in = in.WithGroup(s.group)
			continue
		}
		redacted := make([]slog.Attr, len(s.attrs))
		for i, a := range s.attrs {
			redacted[i] = h.redactor.attr(a)
		}
		in = in.WithAttrs(redacted)
	}
	h.built.Store(&builtHandler{generation: generation, handler: in})
	return in
}

func (r *Redactor) attr(a slog.Attr) slog.Attr {
	return slog.Attr{Key: a.Key, Value: r.value(a.Value)}
}

func (r *Redactor) value(v slog.Value) slog.Value {
	v = v.Resolve() // a LogValuer could return anything, secrets included
	switch v.Kind() {
	case slog.KindString:
		return slog.StringValue(r.String(v.String()))
	case slog.KindGroup:
		group := v.Group()
		out := make([]slog.Attr, len(group))
		for i, a := range group {
			out[i] = r.attr(a)
		}
		return slog.GroupValue(out...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case nil:
			return v
		case error:
			// Always wrapped: an error that is also a json.Marshaler would
			// otherwise be marshalled by a JSON handler, bypassing Error.
			return slog.AnyValue(&redactedError{msg: r.String(x.Error()), err: x})
		case fmt.Stringer:
			return slog.StringValue(r.String(x.String()))
		default:
			return slog.StringValue(r.String(fmt.Sprint(x)))
		}
	default: // numbers, bools, times, durations cannot hold a secret string
		return v
	}
}
