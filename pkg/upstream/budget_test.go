package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/egress"
)

// countingBudget allows a number of requests, then defers, and records
// what the upstream said.
type countingBudget struct {
	mu      sync.Mutex
	left    int
	taken   int
	follows []follow
}

type follow struct {
	until time.Time
	left  int
}

func (b *countingBudget) Take(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left == 0 {
		return errors.Join(ErrDeferred, errors.New("budget test is spent"))
	}
	b.left--
	b.taken++
	return nil
}

func (b *countingBudget) Follow(_ context.Context, until time.Time, left int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.follows = append(b.follows, follow{until, left})
}

func TestEveryRequestDrawsFromTheBudgetAndPassesOnTheUpstreamsWord(t *testing.T) {
	reset := time.Now().Add(time.Hour).Unix()
	upstreamCalls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamCalls++
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/spent?left=0", http.StatusFound)
			return
		}
		w.Header().Set("X-RateLimit-Remaining", r.URL.Query().Get("left"))
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
	}))
	defer srv.Close()
	client := NewClient(Options{Allow: egress.Loopback()})
	b := &countingBudget{left: 2}
	ctx := WithBudget(context.Background(), b)

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/redirect", nil)
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 2, b.taken, "the redirect's second request draws too")
	require.Len(t, b.follows, 1, "the exhausted limit is passed on to the budget")
	assert.Equal(t, follow{time.Unix(reset, 0), 0}, b.follows[0])

	// An upstream with a few left says so too (the budget decides whether
	// that is less than it has).
	b.left = 1
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/few?left=3", nil)
	resp, err = client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Len(t, b.follows, 2)
	assert.Equal(t, follow{time.Unix(reset, 0), 3}, b.follows[1])

	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/spent", nil)
	_, err = client.Do(req)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrDeferred, "the client's error keeps the deferral")
	assert.Equal(t, 3, upstreamCalls, "a deferred request is not sent")
}
