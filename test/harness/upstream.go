package harness

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// Upstream is an httptest server answering every request with the current
// body, which a test may swap to simulate the API changing.
type Upstream struct {
	*httptest.Server
	mu       sync.Mutex
	body     []byte
	status   int
	Requests atomic.Int64
}

// NewUpstream serves body as application/geo+json with status 200.
func NewUpstream(t testing.TB, body []byte) *Upstream {
	u := &Upstream{body: body, status: http.StatusOK}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		u.Requests.Add(1)
		u.mu.Lock()
		body, status := u.body, u.status
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/geo+json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(u.Close)
	return u
}

// Set replaces the answer.
func (u *Upstream) Set(status int, body []byte) {
	u.mu.Lock()
	u.status, u.body = status, body
	u.mu.Unlock()
}
