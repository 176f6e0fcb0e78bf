// Package githubtest replays recorded GitHub answers from a test's testdata/
// folder (a body NAME.json and NAME.headers.json holding
// {"status": ..., "headers": [[name, value], ...]}) and records what a test
// server was asked. It is for the github-* connectors' tests only.
package githubtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// RecordedHost is the API root the recordings link to.
const RecordedHost = "https://api.github.com"

// Recording is one recorded answer.
type Recording struct {
	Status int
	// Headers in recorded order; a name may repeat.
	Headers [][2]string
	// Body is nil when the recording has none (a 304).
	Body []byte
}

// Load reads testdata/NAME.headers.json and, when present, testdata/NAME.json.
func Load(t testing.TB, name string) Recording {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name+".headers.json"))
	require.NoError(t, err)
	var file struct {
		Status  int        `json:"status"`
		Headers [][]string `json:"headers"`
	}
	require.NoError(t, json.Unmarshal(raw, &file))
	rec := Recording{Status: file.Status}
	for _, h := range file.Headers {
		require.Len(t, h, 2, "%s: a header is a [name, value] pair", name)
		rec.Headers = append(rec.Headers, [2]string{h[0], h[1]})
	}
	body, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err == nil {
		rec.Body = body
	} else {
		require.ErrorIs(t, err, os.ErrNotExist)
	}
	return rec
}

// Header returns the first recorded value of name ("" when absent).
func (r Recording) Header(name string) string {
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// WithHeader returns a copy with name set to value (replacing every
// recorded value, or added at the end).
func (r Recording) WithHeader(name, value string) Recording {
	out := r
	out.Headers = nil
	set := false
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			if !set {
				out.Headers = append(out.Headers, [2]string{h[0], value})
				set = true
			}
			continue
		}
		out.Headers = append(out.Headers, h)
	}
	if !set {
		out.Headers = append(out.Headers, [2]string{name, value})
	}
	return out
}

// WithoutHeader returns a copy without name.
func (r Recording) WithoutHeader(name string) Recording {
	out := r
	out.Headers = nil
	for _, h := range r.Headers {
		if !strings.EqualFold(h[0], name) {
			out.Headers = append(out.Headers, h)
		}
	}
	return out
}

// WithBody returns a copy with another body.
func (r Recording) WithBody(body []byte) Recording {
	out := r
	out.Body = body
	return out
}

// Write replays the recording. Link URLs on api.github.com are rewritten to
// host (the test server), exactly as recorded otherwise. Length and
// connection headers are left to the test server: bodies were re-indented.
func (r Recording) Write(w http.ResponseWriter, host string) {
	for _, h := range r.Headers {
		switch strings.ToLower(h[0]) {
		case "content-length", "transfer-encoding", "connection":
			continue
		case "link":
			w.Header().Add(h[0], strings.ReplaceAll(h[1], RecordedHost, host))
		default:
			w.Header().Add(h[0], h[1])
		}
	}
	status := r.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	if r.Body != nil && status != http.StatusNotModified {
		_, _ = w.Write(r.Body)
	}
}

// Request is what a test server was asked.
type Request struct {
	Path, RawQuery string
	Header         http.Header
}

// Server is an httptest server that records every request and answers with
// the test's handler.
type Server struct {
	*httptest.Server
	mu       sync.Mutex
	requests []Request
}

// NewServer starts a server closed at the end of the test.
func NewServer(t *testing.T, handler http.HandlerFunc) *Server {
	t.Helper()
	s := &Server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, Request{Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone()})
		s.mu.Unlock()
		handler(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// Requests returns what the server was asked so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}
