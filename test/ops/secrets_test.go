package ops

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/test/harness"
)

// No reply of the admin API, and nothing the status page reads, carries a
// ${VAR} secret, even when the upstream echoes it back in its errors.
func TestAdminRepliesNeverCarrySecrets(t *testing.T) {
	const secret = "ua-s3cr3t-9b1d"
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"title": "Forbidden", "detail": "User-Agent `+r.UserAgent()+` is blocked"}`)
	}))
	t.Cleanup(echo.Close)
	up := &harness.Upstream{Server: echo}
	s := startStack(t, map[string]string{"UA_SECRET": secret},
		connector{name: "leaky", interval: "1h", upstream: up, userAgent: "(pollgrid ${UA_SECRET})"})
	ctx := context.Background()
	require.Eventually(t, func() bool { return s.status("leaky").ConsecutiveFailures > 0 }, 30*time.Second, 20*time.Millisecond)

	var replies []any
	st, err := s.admin.Status(ctx, "leaky")
	require.NoError(t, err)
	replies = append(replies, st)
	list, err := s.admin.List(ctx, admin.ListRequest{})
	require.NoError(t, err)
	replies = append(replies, list)
	tr, err := s.admin.Trigger(ctx, "leaky")
	require.NoError(t, err)
	assert.Equal(t, "failure", tr.Outcome)
	assert.Contains(t, tr.Error, "403")
	replies = append(replies, tr)
	for _, r := range replies {
		b, err := json.Marshal(r)
		require.NoError(t, err)
		assert.NotContains(t, string(b), secret)
		assert.Contains(t, string(b), "[REDACTED]", "the echoed secret shows masked")
	}
	for _, path := range []string{"/api/connectors", "/api/connectors/leaky", "/connectors/leaky"} {
		code, body := httpGet(t, s.aggregator.HTTP+path)
		require.Equal(t, http.StatusOK, code, body)
		assert.NotContains(t, body, secret, path)
	}
}
