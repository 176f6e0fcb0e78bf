package upstream

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestObserve(t *testing.T) {
	type header struct{ name, value string }
	tests := []struct {
		name       string
		status     int
		headers    func(now time.Time) []header
		wantWait   time.Duration // 0: nothing recorded
		wantReason string
	}{
		{
			name:   "429 Retry-After seconds",
			status: http.StatusTooManyRequests,
			headers: func(time.Time) []header {
				return []header{{"Retry-After", "120"}}
			},
			wantWait:   120 * time.Second,
			wantReason: "429 Too Many Requests: Retry-After 120",
		},
		{
			name:   "429 Retry-After HTTP date",
			status: http.StatusTooManyRequests,
			headers: func(now time.Time) []header {
				return []header{{"Retry-After", now.Add(90 * time.Second).UTC().Format(http.TimeFormat)}}
			},
			wantWait:   90 * time.Second,
			wantReason: "429 Too Many Requests: Retry-After ",
		},
		{
			name:   "503 Retry-After",
			status: http.StatusServiceUnavailable,
			headers: func(time.Time) []header {
				return []header{{"Retry-After", "30"}}
			},
			wantWait:   30 * time.Second,
			wantReason: "503 Service Unavailable: Retry-After 30",
		},
		{
			name:   "200 with X-RateLimit exhausted (GitHub, Unix reset)",
			status: http.StatusOK,
			headers: func(now time.Time) []header {
				return []header{{"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", strconv.FormatInt(now.Add(300*time.Second).Unix(), 10)}}
			},
			wantWait:   300 * time.Second,
			wantReason: "rate limit exhausted (X-RateLimit-Remaining: 0)",
		},
		{
			name:   "200 with X-RateLimit exhausted (Jira, an ISO 8601 reset)",
			status: http.StatusOK,
			headers: func(now time.Time) []header {
				return []header{{"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", now.Add(120 * time.Second).UTC().Format(time.RFC3339)}}
			},
			wantWait:   120 * time.Second,
			wantReason: "rate limit exhausted (X-RateLimit-Remaining: 0)",
		},
		{
			name:   "200 with RateLimit exhausted (IETF draft, seconds)",
			status: http.StatusOK,
			headers: func(time.Time) []header {
				return []header{{"RateLimit-Remaining", "0"}, {"RateLimit-Reset", "30"}}
			},
			wantWait:   30 * time.Second,
			wantReason: "rate limit exhausted (RateLimit-Remaining: 0)",
		},
		{
			name:   "429 with both: the later wins",
			status: http.StatusTooManyRequests,
			headers: func(time.Time) []header {
				return []header{{"Retry-After", "10"}, {"RateLimit-Remaining", "0"}, {"RateLimit-Reset", "60"}}
			},
			wantWait:   60 * time.Second,
			wantReason: "rate limit exhausted (RateLimit-Remaining: 0)",
		},
		{
			name:   "bogus Retry-After is capped at 24h",
			status: http.StatusTooManyRequests,
			headers: func(time.Time) []header {
				return []header{{"Retry-After", "99999999"}}
			},
			wantWait:   24 * time.Hour,
			wantReason: "Retry-After 99999999",
		},
		{
			name:   "Retry-After overflowing a Duration is capped at 24h",
			status: http.StatusTooManyRequests,
			headers: func(time.Time) []header {
				return []header{{"Retry-After", "10000000000"}}
			},
			wantWait:   24 * time.Hour,
			wantReason: "Retry-After 10000000000",
		},
		{
			name:   "far-future rate-limit reset is capped at 24h",
			status: http.StatusOK,
			headers: func(now time.Time) []header {
				return []header{{"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", strconv.FormatInt(now.AddDate(1, 0, 0).Unix(), 10)}}
			},
			wantWait:   24 * time.Hour,
			wantReason: "rate limit exhausted",
		},
		{
			name:   "Retry-After on a 200 is not a request to wait",
			status: http.StatusOK,
			headers: func(time.Time) []header {
				return []header{{"Retry-After", "120"}}
			},
		},
		{
			name:   "rate limit not exhausted",
			status: http.StatusOK,
			headers: func(now time.Time) []header {
				return []header{{"X-RateLimit-Remaining", "12"}, {"X-RateLimit-Reset", strconv.FormatInt(now.Add(time.Hour).Unix(), 10)}}
			},
		},
		{
			name:   "unparsable Retry-After",
			status: http.StatusTooManyRequests,
			headers: func(time.Time) []header {
				return []header{{"Retry-After", "soon"}}
			},
		},
		{
			name:   "negative Retry-After",
			status: http.StatusServiceUnavailable,
			headers: func(time.Time) []header {
				return []header{{"Retry-After", "-5"}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for _, h := range tt.headers(time.Now()) {
					w.Header().Set(h.name, h.value)
				}
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()

			ctx, obs := Observe(t.Context())
			get(t, ctx, local(Options{}), srv.URL, nil)
			until, reason := obs.NotBefore()
			if tt.wantWait == 0 {
				assert.True(t, until.IsZero(), "recorded %s (%s)", until, reason)
				assert.Empty(t, reason)
				return
			}
			assert.WithinDuration(t, time.Now().Add(tt.wantWait), until, 2*time.Second)
			assert.Contains(t, reason, tt.wantReason)
		})
	}
}

func TestObserveKeepsTheLatest(t *testing.T) {
	waits := []string{"30", "120", "10"}
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", waits[n])
		n++
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()

	ctx, obs := Observe(t.Context())
	c := local(Options{})
	for range waits {
		get(t, ctx, c, srv.URL, nil)
	}
	until, reason := obs.NotBefore()
	assert.WithinDuration(t, time.Now().Add(120*time.Second), until, 2*time.Second)
	assert.Contains(t, reason, "Retry-After 120")
}

func TestObserveNeedsTheContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()

	_, obs := Observe(t.Context())
	// A request made with another context records nothing (and does not panic).
	resp := get(t, t.Context(), local(Options{}), srv.URL, nil)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	until, _ := obs.NotBefore()
	assert.True(t, until.IsZero())
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		value  string
		want   time.Time
		wantOK bool
	}{
		{name: "seconds", value: "120", want: now.Add(120 * time.Second), wantOK: true},
		{name: "zero", value: "0", want: now, wantOK: true},
		{name: "spaces", value: " 5 ", want: now.Add(5 * time.Second), wantOK: true},
		{name: "IMF date", value: "Tue, 03 Jun 2025 10:01:30 GMT", want: now.Add(90 * time.Second), wantOK: true},
		{name: "huge stays in the future", value: "10000000000", wantOK: true},
		{name: "empty", value: ""},
		{name: "negative", value: "-1"},
		{name: "garbage", value: "later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.value, now)
			assert.Equal(t, tt.wantOK, ok)
			switch {
			case !tt.wantOK:
				assert.True(t, got.IsZero())
			case tt.want.IsZero():
				assert.True(t, got.After(now.AddDate(100, 0, 0)), "got %s", got)
			default:
				assert.True(t, tt.want.Equal(got), "want %s, got %s", tt.want, got)
			}
		})
	}
}
