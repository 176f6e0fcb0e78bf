package upstream

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Observation collects, during one poll, the latest time the upstream asked
// us not to come back before (Retry-After, exhausted rate limits). The
// worker stores it with the connector's state, so no worker polls earlier.
type Observation struct {
	mu        sync.Mutex
	notBefore time.Time
	reason    string
}

type observationKey struct{}

// Observe returns a context whose requests record into a new Observation.
func Observe(ctx context.Context) (context.Context, *Observation) {
	obs := &Observation{}
	return context.WithValue(ctx, observationKey{}, obs), obs
}

func observationFrom(ctx context.Context) *Observation {
	obs, _ := ctx.Value(observationKey{}).(*Observation)
	return obs
}

func (o *Observation) record(until time.Time, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if until.After(o.notBefore) {
		o.notBefore, o.reason = until, reason
	}
}

// NotBefore returns the time to wait for and why; zero when none.
func (o *Observation) NotBefore() (time.Time, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.notBefore, o.reason
}

// maxHint bounds how far an upstream can push a connector away (a bogus
// header must not silence a connector for a year).
const maxHint = 24 * time.Hour

// backOffHint reads Retry-After on 429 and 503, and exhausted rate limits
// (X-RateLimit-Remaining: 0 with X-RateLimit-Reset, or RateLimit-Remaining /
// RateLimit-Reset) on any answer.
func backOffHint(resp *http.Response, now time.Time) (time.Time, string) {
	var until time.Time
	var why string
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if t, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
			until, why = t, resp.Status+": Retry-After "+resp.Header.Get("Retry-After")
		}
	}
	for _, prefix := range []string{"X-RateLimit-", "RateLimit-"} {
		if strings.TrimSpace(resp.Header.Get(prefix+"Remaining")) != "0" {
			continue
		}
		if t, ok := parseReset(resp.Header.Get(prefix+"Reset"), now); ok && t.After(until) {
			until, why = t, "rate limit exhausted ("+prefix+"Remaining: 0)"
		}
	}
	if until.After(now.Add(maxHint)) {
		until = now.Add(maxHint)
	}
	return until, why
}

// rateLimitLeft reads what an upstream says it has left until its limit
// resets (X-RateLimit-Remaining / -Reset, as GitHub and Jira send them, or
// RateLimit-Remaining / -Reset).
func rateLimitLeft(resp *http.Response, now time.Time) (int, time.Time, bool) {
	for _, prefix := range []string{"X-RateLimit-", "RateLimit-"} {
		left, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get(prefix + "Remaining")))
		if err != nil || left < 0 {
			continue
		}
		if reset, ok := parseReset(resp.Header.Get(prefix+"Reset"), now); ok {
			if reset.After(now.Add(maxHint)) {
				reset = now.Add(maxHint)
			}
			return left, reset, true
		}
	}
	return 0, time.Time{}, false
}

// ParseRetryAfter reads a Retry-After value: delay seconds or an HTTP date.
func ParseRetryAfter(v string, now time.Time) (time.Time, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
		// Beyond this the multiplication overflows into the past.
		const maxSecs = int64(math.MaxInt64 / time.Second)
		return now.Add(time.Duration(min(secs, maxSecs)) * time.Second), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// parseReset reads a rate-limit reset: a Unix time (GitHub) or seconds from
// now (the IETF draft and most others), told apart by size, or an ISO 8601
// time (Jira Cloud: "2024-07-18T12:47Z").
func parseReset(v string, now time.Time) (time.Time, bool) {
	v = strings.TrimSpace(v)
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04Z07:00"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, true
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, false
	}
	if n > 1_000_000_000 {
		return time.Unix(n, 0), true
	}
	return now.Add(time.Duration(n) * time.Second), true
}
