package connectortest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/store"
)

// Spec describes a connector type to Conformance.
type Spec struct {
	// Type is the type name, as registered.
	Type string
	// Factory builds the connector (the type's New, or the registry's).
	Factory connector.Factory
	// Config returns a valid config pointing at the test server.
	Config func(baseURL string) string
	// OK returns the routes of one successful poll with at least one item
	// (every page it reads). Use Load to read them from testdata.
	OK func(t testing.TB) []Route
	// Rewrite lists origins in the recorded responses that must point at
	// the test server ("https://api.github.com" in Link headers).
	Rewrite []string
	// BadConfigs are configs the factory must reject (at least one).
	BadConfigs []string
	// Offline says the type reaches no upstream: its items are made up
	// (demo). OK is then nil, since a poll must make no request at all, and
	// the checks of upstream answers (a held request, a 500, a 304, an
	// empty body) are skipped; a poll whose context is already cancelled
	// must fail.
	Offline bool
}

// CancelDeadline is how soon a Poll must return once its context is
// cancelled.
const CancelDeadline = 2 * time.Second

type check struct {
	name string
	run  func(t testing.TB, s Spec)
	// upstream is true for a check of how the type meets an upstream's
	// answers, which an Offline type has none of.
	upstream bool
}

// checks are the rules every connector type keeps. Each takes a testing.TB so
// that this package's tests can show that each one catches its bug.
var checks = []check{
	{"bad configs are rejected without I/O", checkBadConfigs, false},
	{"a valid config is accepted without I/O", checkValidConfig, false},
	{"a good poll publishes and a repeat publishes nothing", checkRepeat, false},
	{"a cancelled context stops the poll", checkCancel, false},
	{"a 500 fails the poll and moves no cursor", checkServerError, true},
	{"a 304 to a conditional request is NotModified", checkNotModified, true},
	{"an empty 200 fails the poll", checkEmptyBody, true},
}

// Conformance runs, as subtests, the rules every connector type keeps:
//   - each of BadConfigs is rejected by the factory with an error, and
//     neither it nor a valid config makes a request (no I/O in New); a valid
//     config is also accepted with empty Deps, as config validation does;
//   - the OK routes make a successful poll whose signals are "created" with
//     JSON object data, and polling the same data again publishes nothing;
//   - a Poll whose context is cancelled while its request hangs returns
//     within CancelDeadline with context.Canceled (or DeadlineExceeded) in
//     its error chain;
//   - after a good poll, a 500 fails the poll with an error naming the
//     status, publishes nothing, keeps cursor, ETag and Last-Modified, and
//     counts one consecutive failure;
//   - after a good poll whose answers carried an ETag and a Last-Modified
//     (the check adds them where the recording has none), a 304 to
//     everything publishes nothing and keeps cursor, ETag and Last-Modified;
//     when the connector's request was conditional (If-None-Match or
//     If-Modified-Since) the poll must succeed as NotModified, not fail: it
//     asked "has it changed?" and the answer is "no". A connector that sends
//     no validators may fail on a 304 it did not ask for;
//   - after a good poll, an empty 200 body fails the poll (no panic), as
//     the 500 does.
//
// For an Offline type the good poll is made against a server with no
// route, so that any request fails the check; the checks of a 500, a 304
// and an empty body are skipped; and a Poll called with a context already
// cancelled must fail with context.Canceled in its error chain.
func Conformance(t *testing.T, s Spec) {
	t.Helper()
	if err := s.validate(); err != nil {
		t.Fatalf("connectortest: invalid Spec: %v", err)
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if s.Offline && c.upstream {
				t.Skipf("%s reaches no upstream (Spec.Offline)", s.Type)
			}
			c.run(t, s)
		})
	}
}

func (s Spec) validate() error {
	var errs []error
	if s.Type == "" {
		errs = append(errs, errors.New("Type is empty"))
	}
	if s.Factory == nil {
		errs = append(errs, errors.New("Factory is nil"))
	}
	if s.Config == nil {
		errs = append(errs, errors.New("Config is nil (return a valid config for a base URL)"))
	}
	switch {
	case s.OK == nil && !s.Offline:
		errs = append(errs, errors.New("OK is nil (return the routes of one good poll)"))
	case s.OK != nil && s.Offline:
		errs = append(errs, errors.New("OK is set for an Offline type (it must make no request: leave OK nil)"))
	}
	if len(s.BadConfigs) == 0 {
		errs = append(errs, errors.New("BadConfigs is empty (list configs the factory must reject)"))
	}
	return errors.Join(errs...)
}

// noIO is a client whose every request fails and is counted.
func noIO() (*http.Client, *atomic.Int64) {
	var n atomic.Int64
	return &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
		n.Add(1)
		return nil, errors.New("connectortest: no I/O while building a connector")
	})}, &n
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// build calls the factory, turning a panic into an error.
func build(s Spec, raw string, deps connector.Deps) (conn connector.Connector, err error) {
	defer func() {
		if v := recover(); v != nil {
			conn, err = nil, fmt.Errorf("factory panicked: %v\n%s", v, debug.Stack())
		}
	}()
	return s.Factory(json.RawMessage(raw), deps)
}

func checkBadConfigs(t testing.TB, s Spec) {
	srv := Replay(t) // no routes: any request fails the test
	client, requests := noIO()
	deps := connector.Deps{HTTP: client, Logger: slog.New(slog.DiscardHandler)}
	for _, raw := range s.BadConfigs {
		conn, err := build(s, raw, deps)
		if err == nil {
			t.Errorf("%s accepted the bad config %s (got a %T)", s.Type, raw, conn)
		} else if err.Error() == "" {
			t.Errorf("%s rejected the bad config %s with an empty error text: name the field and the fix", s.Type, raw)
		} else {
			t.Logf("%s rejects %s: %v", s.Type, raw, err)
		}
		if n := requests.Swap(0); n > 0 {
			t.Errorf("%s made %d HTTP request(s) while building from %s: decode and validate without I/O", s.Type, n, raw)
		}
	}
	assert.Empty(t, srv.Requests(), "requests to the test server while building from bad configs")
}

func checkValidConfig(t testing.TB, s Spec) {
	srv := Replay(t)
	raw := s.Config(srv.URL)
	// Config validation (connector.Registry.Validate) builds with empty Deps.
	conn, err := build(s, raw, connector.Deps{})
	require.NoError(t, err, "%s rejected Spec.Config with empty Deps: %s", s.Type, raw)
	require.NotNil(t, conn, "%s returned neither a connector nor an error", s.Type)

	client, requests := noIO()
	_, err = build(s, raw, connector.Deps{HTTP: client, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err, "%s rejected Spec.Config: %s", s.Type, raw)
	assert.Zero(t, requests.Load(), "%s made HTTP requests while building: decode and validate without I/O", s.Type)
	assert.Empty(t, srv.Requests(), "requests to the test server while building a connector")
}

// goodPoll runs one successful poll with the OK routes (none for an
// Offline type: any request fails the test).
func goodPoll(t testing.TB, s Spec) (*Server, *Harness, Poll) {
	t.Helper()
	var routes []Route
	if !s.Offline {
		routes = s.OK(t)
	}
	return goodPollWith(t, s, routes)
}

func goodPollWith(t testing.TB, s Spec, routes []Route) (*Server, *Harness, Poll) {
	t.Helper()
	srv := Replay(t, routes...)
	srv.Rewrite(s.Rewrite...)
	h := New(t, s.Factory, s.Type, s.Config(srv.URL))
	p := h.Poll(t.Context())
	p.RequireOK(t)
	if len(p.Signals) == 0 {
		t.Fatalf("the good poll published no signal (failed items: %d): Spec.OK (an Offline type's Spec.Config) must give at least one item%s",
			len(p.Failed), describeFailed(p.Failed))
	}
	return srv, h, p
}

// assertStateKept checks that a poll moved none of the connector's own state.
func assertStateKept(t testing.TB, before, after store.State) {
	t.Helper()
	assert.Equal(t, before.Cursor, after.Cursor, "cursor moved")
	assert.Equal(t, before.ETag, after.ETag, "ETag changed")
	assert.Equal(t, before.LastModified, after.LastModified, "Last-Modified changed")
}

func checkRepeat(t testing.TB, s Spec) {
	_, h, first := goodPoll(t, s)
	for _, sig := range first.Signals {
		assert.Equal(t, Created, sig.Change, "first poll: item %s", sig.ID)
		var data map[string]any
		assert.NoError(t, json.Unmarshal(sig.Data, &data), "item %s: data must be a JSON object, got %.200s", sig.ID, sig.Data)
	}
	second := h.Poll(t.Context())
	second.RequireOK(t)
	second.AssertNoSignals(t)
}

func checkCancel(t testing.TB, s Spec) {
	if s.Offline {
		checkCancelOffline(t, s)
		return
	}
	srv := Hang(t, nil)
	h := New(t, s.Factory, s.Type, s.Config(srv.URL))

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan Poll, 1)
	go func() { done <- h.Poll(ctx) }()
	finished := false
	defer func() {
		// Whatever failed, let the poll end before the test does.
		cancel()
		srv.Release()
		if !finished {
			select {
			case <-done:
			case <-time.After(cancelWait):
			}
		}
	}()

	select {
	case <-srv.Arrived():
	case p := <-done:
		finished = true
		t.Fatalf("the poll ended before its request reached the server: %v", p.Err)
	case <-time.After(cancelWait):
		t.Fatalf("no request reached the test server within %s", cancelWait)
	}
	cancel()
	select {
	case p := <-done:
		finished = true
		assert.True(t, errors.Is(p.Err, context.Canceled) || errors.Is(p.Err, context.DeadlineExceeded),
			"a cancelled poll must fail with context.Canceled in its error chain (wrap with %%w); got %v", p.Err)
		p.AssertNoSignals(t)
	case <-time.After(CancelDeadline):
		t.Errorf("Poll did not return within %s of its context being cancelled: "+
			"build requests with http.NewRequestWithContext(ctx, ...) and check ctx between pages", CancelDeadline)
	}
}

// checkCancelOffline: a type that makes no request has none to hold while
// its context is cancelled, so its Poll gets a context cancelled already,
// as a worker shutting down may pass it, and must not publish.
func checkCancelOffline(t testing.TB, s Spec) {
	conn, err := build(s, s.Config(""), connector.Deps{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err, "%s rejected Spec.Config", s.Type)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res, err := conn.Poll(ctx, connector.State{})
	assert.True(t, errors.Is(err, context.Canceled),
		"a poll whose context is cancelled must fail with context.Canceled in its error chain (check ctx.Err() and wrap with %%w); got %v", err)
	assert.Empty(t, res.Items, "a cancelled poll returned items")
}

func checkServerError(t testing.TB, s Spec) {
	srv, h, first := goodPoll(t, s)
	srv.Set(Any(Response{
		Status: http.StatusInternalServerError,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   []byte(`{"message":"connectortest: internal error"}`),
	}))
	p := h.Poll(t.Context())
	require.Error(t, p.Err, "a 500 must fail the poll")
	assert.Contains(t, p.Err.Error(), "500", "the error must name the status")
	p.AssertNoSignals(t)
	assertStateKept(t, first.State, p.State)
	assert.Equal(t, 1, p.State.ConsecutiveFailures)
}

// withValidators gives every recorded answer of routes an ETag and a
// Last-Modified where it has none, so that a connector that keeps
// validators makes its next request conditional.
func withValidators(routes []Route) []Route {
	out := make([]Route, len(routes))
	for i, r := range routes {
		r.Responses = slices.Clone(r.Responses)
		for j, resp := range r.Responses {
			if resp.Header.Get("ETag") == "" {
				resp = resp.WithHeader("ETag", `"connectortest-1"`)
			}
			if resp.Header.Get("Last-Modified") == "" {
				resp = resp.WithHeader("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
			}
			r.Responses[j] = resp
		}
		out[i] = r
	}
	return out
}

func checkNotModified(t testing.TB, s Spec) {
	srv, h, first := goodPollWith(t, s, withValidators(s.OK(t)))
	before := len(srv.Requests())
	srv.Set(Any(Response{Status: http.StatusNotModified}))
	p := h.Poll(t.Context())
	p.AssertNoSignals(t)
	assertStateKept(t, first.State, p.State)
	reqs := srv.Requests()
	if len(reqs) <= before {
		t.Fatalf("the poll after a good one made no request")
	}
	req := reqs[before]
	if req.Header.Get("If-None-Match") == "" && req.Header.Get("If-Modified-Since") == "" {
		// Not conditional: a 304 nobody asked for may fail the poll.
		if p.Err == nil {
			assert.True(t, p.NotModified, "a 304 must end the poll as NotModified (or fail it), not as a success with nothing in it")
		}
		return
	}
	if p.Err != nil {
		t.Errorf("a 304 to a conditional request (If-None-Match %q, If-Modified-Since %q) must end the poll as NotModified, not fail it: %v",
			req.Header.Get("If-None-Match"), req.Header.Get("If-Modified-Since"), p.Err)
		return
	}
	assert.True(t, p.NotModified, "a 304 must end the poll as NotModified, not as a success with nothing in it")
}

func checkEmptyBody(t testing.TB, s Spec) {
	srv, h, first := goodPoll(t, s)
	srv.Set(Any(Response{Status: http.StatusOK}))
	p := h.Poll(t.Context())
	require.Error(t, p.Err, "an empty 200 body must fail the poll: it is not an empty list")
	p.AssertNoSignals(t)
	assertStateKept(t, first.State, p.State)
	assert.Equal(t, 1, p.State.ConsecutiveFailures)
}
