package cli

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// run runs pollctl with args and env, as main does.
func run(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(args, IO{In: strings.NewReader(""), Out: &out, Err: &errOut, Env: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
	return code, out.String(), errOut.String()
}

// --version prints the build as the services' -version does.
func TestVersion(t *testing.T) {
	for _, flag := range []string{"--version", "-v"} {
		code, out, _ := run(t, nil, flag)
		assert.Equal(t, ExitOK, code)
		assert.Equal(t, "pollgrid pollctl dev (commit unknown, "+runtime.Version()+")\n", out, flag)
	}
}

// A failed dry-run poll's error is printed once: in the report, where the
// state it would write says "the error above", and not again on standard
// error, which says only that it failed.
func TestDryRunPrintsTheErrorOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"title": "Service Unavailable", "detail": "the database connection pool is exhausted"}`))
	}))
	t.Cleanup(srv.Close)
	file := filepath.Join(t.TempDir(), "connectors.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"connectors": [{"name": "alerts", "type": "weather-noaa", "retries": {"max": 0},
		"config": {"area": "AZ", "user_agent": "(pollctl test, test@example.com)", "base_url": "`+srv.URL+`"}}]}`), 0o600))

	code, out, stderr := run(t, map[string]string{"UPSTREAM_ALLOW": "127.0.0.1"}, "dry-run", "alerts", "--fresh", "--config", file)
	assert.Equal(t, ExitFailed, code)
	const cause = "the database connection pool is exhausted"
	assert.Equal(t, 1, strings.Count(out+stderr, cause), "stdout:\n%s\nstderr:\n%s", out, stderr)
	assert.Contains(t, out, "  error: poll alerts: nws alerts: upstream answered 503 Service Unavailable: "+cause)
	assert.Regexp(t, `last error:\s+the error above`, out)
	assert.Equal(t, "pollctl: the dry-run poll of alerts failed\n", stderr)
}

// tail's options are checked before it connects.
func TestTailOptions(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name    string
		flags   tailFlags
		want    time.Time
		wantErr string
	}{
		{name: "nothing stored asked", flags: tailFlags{}},
		{name: "the last 20", flags: tailFlags{last: 20}},
		{name: "since a duration ago", flags: tailFlags{since: "90m"}, want: now.Add(-90 * time.Minute)},
		{name: "since a time", flags: tailFlags{since: "2026-12-07T08:00:00Z"}, want: time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)},
		{name: "since what?", flags: tailFlags{since: "yesterday"}, wantErr: `--since "yesterday" is neither a duration back from now (1h, 30m) nor an RFC 3339 time`},
		{name: "both", flags: tailFlags{last: 5, since: "1h"}, wantErr: "--last and --since both say where to start: give one"},
		{name: "a negative last", flags: tailFlags{last: -1}, wantErr: "--last -1: give a number of signals above 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.flags.sinceTime(now)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.Equal(t, ExitUsage, err.(*exitError).code)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
