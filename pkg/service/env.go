package service

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
)

// Env is the environment every service reads (docs/connector-framework.md, "Config reference").
type Env struct {
	// NATSURL is NATS_URL; default nats://127.0.0.1:4222.
	NATSURL string
	// RedisURL is REDIS_URL (redis:// or rediss://); default redis://127.0.0.1:6379.
	RedisURL string
	// RedisPrefix is REDIS_PREFIX, the prefix of every key; default pollgrid.
	RedisPrefix string
	// HTTPAddr is HTTP_ADDR for /healthz, /readyz and /metrics.
	HTTPAddr string
	// LogLevel is LOG_LEVEL: debug, info, warn, error; default info.
	LogLevel string
	// LogFormat is LOG_FORMAT: json (one object a line, the default) or
	// text (key=value lines for a terminal).
	LogFormat string
	// StreamReplicas is NATS_STREAM_REPLICAS for the JetStream streams; default 1.
	StreamReplicas int
	// DuplicateWindow is NATS_DUPLICATE_WINDOW, how long SIGNALS remembers a
	// signal's id to drop a re-publish; default 10m. Make it at least as long
	// as the Redis outage (or data loss) you want absorbed without duplicate
	// signals; it costs nats-server memory for every signal of the window.
	DuplicateWindow time.Duration
	// PProfAddr is PPROF_ADDR, where Go's profiler (/debug/pprof/) listens;
	// empty (the default) turns it off. Keep it on loopback.
	PProfAddr string
}

// ReadEnv reads the shared variables; defaultHTTP is the service's own
// default listen address.
func ReadEnv(lookup config.Env, defaultHTTP string) (Env, error) {
	e := Env{
		NATSURL:     get(lookup, "NATS_URL", "nats://127.0.0.1:4222"),
		RedisURL:    get(lookup, "REDIS_URL", "redis://127.0.0.1:6379"),
		RedisPrefix: get(lookup, "REDIS_PREFIX", "pollgrid"),
		HTTPAddr:    get(lookup, "HTTP_ADDR", defaultHTTP),
		LogLevel:    get(lookup, "LOG_LEVEL", "info"),
		LogFormat:   get(lookup, "LOG_FORMAT", telemetry.LogJSON),
		PProfAddr:   get(lookup, "PPROF_ADDR", ""),
	}
	if e.LogFormat != telemetry.LogJSON && e.LogFormat != telemetry.LogText {
		return e, fmt.Errorf("LOG_FORMAT=%q: want %s or %s", e.LogFormat, telemetry.LogJSON, telemetry.LogText)
	}
	var err error
	if e.StreamReplicas, err = Int(lookup, "NATS_STREAM_REPLICAS", 1, 1, 5); err != nil {
		return e, err
	}
	if e.DuplicateWindow, err = Duration(lookup, "NATS_DUPLICATE_WINDOW", 10*time.Minute); err != nil {
		return e, err
	}
	return e, nil
}

func get(lookup config.Env, key, def string) string {
	if v, ok := lookup(key); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	return def
}

// Int reads an integer variable within [lo, hi].
func Int(lookup config.Env, key string, def, lo, hi int) (int, error) {
	v, ok := lookup(key)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%q: want a whole number from %d to %d", key, v, lo, hi)
	}
	return n, nil
}

// Duration reads a Go duration variable that must be positive.
func Duration(lookup config.Env, key string, def time.Duration) (time.Duration, error) {
	v, ok := lookup(key)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 30s", key, v)
	}
	return d, nil
}

// List reads a comma-separated variable.
func List(lookup config.Env, key string) []string {
	v, _ := lookup(key)
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
