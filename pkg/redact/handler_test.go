package redact

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const secret = "ghp_s3cr3tT0ken"

type stringer struct{ s string }

func (s stringer) String() string { return s.s }

type valuer struct{}

func (valuer) LogValue() slog.Value { return slog.StringValue("from valuer " + secret) }

func newLogger(r *Redactor) (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(NewHandler(slog.NewJSONHandler(&buf, nil), r)), &buf
}

func TestHandlerRedactsEverywhere(t *testing.T) {
	tests := []struct {
		name string
		log  func(l *slog.Logger)
	}{
		{"message", func(l *slog.Logger) { l.Info("token is " + secret) }},
		{"string attr", func(l *slog.Logger) { l.Info("poll", "auth", "Bearer "+secret) }},
		{"error attr", func(l *slog.Logger) {
			l.Error("poll failed", "err", fmt.Errorf("GET ?token=%s: %w", secret, errors.New("401")))
		}},
		{"stringer attr", func(l *slog.Logger) { l.Info("poll", "req", stringer{"token=" + secret}) }},
		{"any attr", func(l *slog.Logger) { l.Info("poll", "headers", map[string]string{"Authorization": secret}) }},
		{"log valuer", func(l *slog.Logger) { l.Info("poll", "v", valuer{}) }},
		{"nested group", func(l *slog.Logger) {
			l.Info("poll", slog.Group("http", slog.Group("req", slog.String("url", "https://x/?t="+secret))))
		}},
		{"With attrs", func(l *slog.Logger) { l.With("token", secret).Info("poll") }},
		{"WithGroup then With", func(l *slog.Logger) { l.WithGroup("conn").With("cfg", secret).Info("poll", "x", secret) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, buf := newLogger(New(secret))
			tt.log(logger)
			out := buf.String()
			require.NotEmpty(t, out)
			assert.NotContains(t, out, secret)
			assert.Contains(t, out, Mask)
		})
	}
}

func TestHandlerKeepsStructureAndPlainValues(t *testing.T) {
	logger, buf := newLogger(New(secret))
	logger.WithGroup("conn").With("name", "noaa").Info("poll done",
		"items", 3, "ok", true, "took", 2*time.Second, "err", errors.New("plain"))

	assert.Contains(t, buf.String(), `"conn":{"name":"noaa","items":3,"ok":true,"took":2000000000,"err":"plain"}`)
}

func TestHandlerSeesSecretsAddedAfterWith(t *testing.T) {
	r := New()
	logger, buf := newLogger(r)
	withURL := logger.With("url", "https://x/?token=late-secret")
	withURL.Info("before reload")
	require.Contains(t, buf.String(), "late-secret")

	buf.Reset()
	r.Set([]string{"late-secret"})
	withURL.Info("after reload")

	assert.NotContains(t, buf.String(), "late-secret")
	assert.Contains(t, buf.String(), Mask)
}

func TestHandlerRespectsInnerLevel(t *testing.T) {
	var buf bytes.Buffer
	inner := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})
	logger := slog.New(NewHandler(inner, nil))
	logger.Info("dropped")
	logger.Warn("kept")
	assert.NotContains(t, buf.String(), "dropped")
	assert.Contains(t, buf.String(), "kept")
}
