package poll_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// A destination the outbound guard refuses is refused again on every
// retry: the poll fails at once, without the retries' waits, and its error
// says how to allow the destination.
func TestARefusalByTheOutboundGuardIsNotRetried(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		t.Error("the guard let a request through to loopback")
	}))
	t.Cleanup(srv.Close)
	e := newEnv(t)
	e.cfg.Retries = config.Retries{Max: 3, Backoff: time.Second}
	// No allowlist: loopback is refused, as in production.
	out := e.poll(t, httpConn{client: upstream.NewClient(upstream.Options{}), url: srv.URL})

	require.Error(t, out.Err)
	assert.ErrorIs(t, out.Err, egress.ErrRefused)
	assert.Contains(t, out.Err.Error(), "config.allow_hosts")
	assert.Equal(t, 1, out.Attempts, "retrying a refusal cannot succeed")
	assert.Empty(t, e.sleeps, "no wait for a retry")
	assert.Equal(t, 1, e.state(t).ConsecutiveFailures)
}
