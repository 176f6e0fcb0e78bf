package poll_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/poll"
	"github.com/pollgrid/pollgrid/pkg/redact"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/upstream"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// step is one scripted answer of fakeConn.
type step func(ctx context.Context, in connector.State) (connector.Result, error)

func returns(res connector.Result) step {
	return func(context.Context, connector.State) (connector.Result, error) { return res, nil }
}

func fails(err error) step {
	return func(context.Context, connector.State) (connector.Result, error) { return connector.Result{}, err }
}

// fakeConn answers each Poll with the next step of its script (the last step
// repeats) and records the state it was given.
type fakeConn struct {
	mu     sync.Mutex
	script []step
	inputs []connector.State
}

func newConn(script ...step) *fakeConn { return &fakeConn{script: script} }

func (f *fakeConn) Poll(ctx context.Context, in connector.State) (connector.Result, error) {
	f.mu.Lock()
	i := len(f.inputs)
	f.inputs = append(f.inputs, in)
	s := f.script[min(i, len(f.script)-1)]
	f.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		return connector.Result{}, errors.New("fakeConn: poll context has no deadline")
	}
	return s(ctx, in)
}

func (f *fakeConn) calls() []connector.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]connector.State(nil), f.inputs...)
}

// recorder is a Publisher that keeps every batch, or fails while fail is set.
type recorder struct {
	mu      sync.Mutex
	batches [][]*pollgridv1.Signal
	ids     map[string]bool
	fail    error
}

// PublishSignals records signals and, as JetStream's duplicate window does,
// counts those whose id it already has.
func (p *recorder) PublishSignals(_ context.Context, signals []*pollgridv1.Signal) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return 0, p.fail
	}
	if p.ids == nil {
		p.ids = map[string]bool{}
	}
	dups := 0
	for _, s := range signals {
		if p.ids[bus.SignalID(s)] {
			dups++
		}
		p.ids[bus.SignalID(s)] = true
	}
	p.batches = append(p.batches, signals)
	return dups, nil
}

func (p *recorder) setFail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = err
}

func (p *recorder) published() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, b := range p.batches {
		n += len(b)
	}
	return n
}

// clock is a settable time, in whole milliseconds as the store keeps it.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	store  *store.Store
	pub    *recorder
	clock  *clock
	runner *poll.Runner
	sleeps []time.Duration
	cfg    config.Connector
	// noPrefetch polls as for a connector with too many seen items for
	// Acquire to bring their versions: the runner reads them itself.
	noPrefetch bool
	// guard is passed to every Run.
	guard poll.Guard
}

const secret = "s3cr3t"

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{
		store: store.New(redistest.Start(t).Client(t), store.Options{}),
		pub:   &recorder{},
		clock: &clock{now: time.Now().UTC().Truncate(time.Millisecond)},
		cfg: config.Connector{
			Name:     "alerts-test",
			Type:     "fake",
			Enabled:  true,
			Interval: time.Minute,
			Timeout:  5 * time.Second,
			Retries:  config.Retries{Max: 0, Backoff: time.Second},
			LeaseTTL: 30 * time.Second,
		},
	}
	e.runner = &poll.Runner{
		Publisher: e.pub,
		Seen:      e.store,
		Redactor:  redact.New(secret),
		Now:       e.clock.Now,
		Sleep: func(ctx context.Context, d time.Duration) error {
			e.sleeps = append(e.sleeps, d)
			return ctx.Err()
		},
	}
	return e
}

// poll runs one poll as the worker does: acquire, run, commit.
func (e *env) poll(t testing.TB, conn connector.Connector) poll.Outcome {
	t.Helper()
	ctx := context.Background()
	// As a trigger: the runner is tested here, not the tick's gate.
	lease, prev, err := e.store.Acquire(ctx, e.cfg.Name, "worker-1", e.cfg.LeaseTTL, store.ClaimTrigger)
	require.NoError(t, err)
	if e.noPrefetch {
		prev.Seen = nil // as for a connector with more than store.PrefetchSeen items
	}
	out := e.runner.Run(ctx, e.cfg, conn, prev, e.guard)
	require.NoError(t, e.store.Commit(ctx, lease, out.Commit))
	return out
}

func (e *env) state(t testing.TB) store.State {
	t.Helper()
	st, err := e.store.State(context.Background(), e.cfg.Name)
	require.NoError(t, err)
	return st
}

func item(id, version string) connector.Item {
	return connector.Item{ID: id, Version: version, Data: json.RawMessage(fmt.Sprintf(`{"id":%q,"version":%q}`, id, version))}
}

func result(cursor string, items ...connector.Item) connector.Result {
	return connector.Result{Items: items, State: connector.State{Cursor: cursor}}
}

type change struct{ id, version, change string }

func changes(signals []*pollgridv1.Signal) []change {
	out := []change{}
	for _, s := range signals {
		out = append(out, change{s.GetItemId(), s.GetVersion(), s.GetChange()})
	}
	return out
}

func TestChangeDetection(t *testing.T) {
	// The seen versions come with the lease for a small connector, and are
	// read by the runner for a large one: both must detect the same changes.
	for _, noPrefetch := range []bool{false, true} {
		t.Run(fmt.Sprintf("noPrefetch=%v", noPrefetch), func(t *testing.T) {
			e := newEnv(t)
			e.noPrefetch = noPrefetch
			changeDetection(t, e)
		})
	}
}

func changeDetection(t *testing.T, e *env) {

	// First poll: everything is new.
	out := e.poll(t, newConn(returns(result("c1", item("a", "1"), item("b", "1"), item("c", "1")))))
	require.NoError(t, out.Err)
	assert.Equal(t, []change{{"a", "1", bus.ChangeCreated}, {"b", "1", bus.ChangeCreated}, {"c", "1", bus.ChangeCreated}}, changes(out.Signals))
	assert.Equal(t, 3, e.pub.published(), "the signals reached the publisher")
	assert.Equal(t, 3, out.Fetched)
	assert.Equal(t, 1, out.Attempts)
	first := out.Signals[0]
	assert.Equal(t, "alerts-test", first.GetConnector())
	assert.Equal(t, "fake", first.GetConnectorType())
	assert.JSONEq(t, `{"id":"a","version":"1"}`, string(first.GetData()))
	assert.True(t, e.clock.Now().Equal(first.GetObservedAt().AsTime()))
	assert.Equal(t, "c1", e.state(t).Cursor)

	// The same items again: nothing published, the publisher not even called.
	e.clock.Advance(time.Minute)
	out = e.poll(t, newConn(returns(result("c2", item("a", "1"), item("b", "1"), item("c", "1")))))
	require.NoError(t, out.Err)
	assert.Empty(t, out.Signals)
	assert.Equal(t, 3, e.pub.published())
	assert.Empty(t, out.Commit.Seen, "unchanged items seen the same day write nothing")
	assert.Equal(t, "c2", e.state(t).Cursor)

	// One version changed: exactly one update.
	e.clock.Advance(time.Minute)
	out = e.poll(t, newConn(returns(result("c3", item("a", "1"), item("b", "2"), item("c", "1")))))
	require.NoError(t, out.Err)
	assert.Equal(t, []change{{"b", "2", bus.ChangeUpdated}}, changes(out.Signals))

	// A new item among known ones, and an item gone: only the new one.
	e.clock.Advance(time.Minute)
	out = e.poll(t, newConn(returns(result("c4", item("b", "2"), item("d", "1")))))
	require.NoError(t, out.Err)
	assert.Equal(t, []change{{"d", "1", bus.ChangeCreated}}, changes(out.Signals))

	// An item that went away and comes back unchanged publishes nothing.
	e.clock.Advance(time.Minute)
	out = e.poll(t, newConn(returns(result("c5", item("a", "1")))))
	require.NoError(t, out.Err)
	assert.Empty(t, out.Signals)
	assert.Equal(t, 5, e.pub.published())
}

func TestUnusableItems(t *testing.T) {
	e := newEnv(t)
	res := connector.Result{
		Items: []connector.Item{
			item("a", "1"),
			{ID: "", Version: "1", Data: json.RawMessage(`{}`)},
			{ID: "no-version", Data: json.RawMessage(`{}`)},
			{ID: "bad-json", Version: "1", Data: json.RawMessage(`{"unterminated":`)},
			item("a", "2"), // repeated id: the first wins
			item("b", "1"),
			{ID: "no-data", Version: "1"},
		},
		Failed: []connector.ItemError{{ID: "features[9]", Err: errors.New("no properties")}},
	}
	out := e.poll(t, newConn(returns(res)))
	require.NoError(t, out.Err, "bad items fail themselves, not the poll")
	assert.Equal(t, []change{{"a", "1", bus.ChangeCreated}, {"b", "1", bus.ChangeCreated}, {"no-data", "1", bus.ChangeCreated}}, changes(out.Signals))
	assert.Equal(t, 8, out.Fetched)

	failed := map[string]string{}
	for _, f := range out.Failed {
		failed[f.ID] = f.Err.Error()
	}
	assert.Equal(t, map[string]string{
		"features[9]": "no properties",
		"items[1]":    "item has no id",
		"no-version":  "item has no version",
		"bad-json":    "item data is not valid JSON",
		"a":           "item id repeated in one poll",
	}, failed)

	// The first "a" was recorded as seen, not the repeat.
	seen, err := e.store.SeenEntries(context.Background(), e.cfg.Name, []string{"a", "b", "no-version", "bad-json"})
	require.NoError(t, err)
	assert.Equal(t, []string{"1", "1", "", ""}, []string{seen[0].Version, seen[1].Version, seen[2].Version, seen[3].Version})
}

func TestConnectorError(t *testing.T) {
	e := newEnv(t)
	e.cfg.Interval = time.Minute
	out := e.poll(t, newConn(returns(connector.Result{
		Items: []connector.Item{item("a", "1")},
		State: connector.State{Cursor: "c1", ETag: `"e1"`, LastModified: "Tue, 03 Jun 2025 10:00:00 GMT"},
	})))
	require.NoError(t, out.Err)
	success := e.clock.Now()

	errDown := errors.New("upstream answered 502 Bad Gateway")
	for failures := 1; failures <= 3; failures++ {
		e.clock.Advance(time.Minute)
		now := e.clock.Now()
		conn := newConn(fails(errDown))
		out = e.poll(t, conn)

		require.Error(t, out.Err)
		assert.ErrorIs(t, out.Err, errDown)
		assert.Equal(t, "poll alerts-test: upstream answered 502 Bad Gateway", out.Err.Error())
		assert.Empty(t, out.Signals)
		assert.Empty(t, out.Commit.Seen)
		assert.Equal(t, []connector.State{{Cursor: "c1", ETag: `"e1"`, LastModified: "Tue, 03 Jun 2025 10:00:00 GMT"}}, conn.calls(),
			"the connector starts from the stored cursor and validators")

		st := e.state(t)
		assert.Equal(t, "c1", st.Cursor, "a failed poll moves no cursor")
		assert.Equal(t, `"e1"`, st.ETag)
		assert.Equal(t, "Tue, 03 Jun 2025 10:00:00 GMT", st.LastModified)
		assert.Equal(t, failures, st.ConsecutiveFailures)
		assert.Equal(t, out.Err.Error(), st.LastError)
		assert.WithinDuration(t, now, st.LastPoll, 0)
		assert.WithinDuration(t, success, st.LastSuccess, 0, "a failure does not move LastSuccess")
		if failures == 1 {
			assert.True(t, st.NotBefore.IsZero(), "the first failure waits for the next tick only")
			assert.Empty(t, st.NotBeforeBy)
		} else {
			wait := st.NotBefore.Sub(now)
			d := min(e.cfg.Interval<<(failures-1), poll.MaxBackoff)
			assert.True(t, wait >= d/2 && wait <= d, "failure %d waits %s, want within [%s, %s]", failures, wait, d/2, d)
			assert.Equal(t, store.WaitBackoff, st.NotBeforeBy, "our wait, not the upstream's")
		}
	}

	// A success clears the failure record.
	e.clock.Advance(time.Minute)
	out = e.poll(t, newConn(returns(result("c2", item("a", "1")))))
	require.NoError(t, out.Err)
	st := e.state(t)
	assert.Zero(t, st.ConsecutiveFailures)
	assert.Empty(t, st.LastError)
	assert.True(t, st.NotBefore.IsZero())
	assert.Equal(t, "c2", st.Cursor)
}

func TestPublishFailure(t *testing.T) {
	e := newEnv(t)
	errNoAck := errors.New("nats: timeout waiting for ack")
	e.pub.setFail(errNoAck)
	items := []connector.Item{item("a", "1"), item("b", "1")}

	out := e.poll(t, newConn(returns(result("c1", items...))))
	require.Error(t, out.Err)
	assert.ErrorIs(t, out.Err, errNoAck)
	assert.Contains(t, out.Err.Error(), "publish signals")
	assert.Empty(t, out.Signals, "nothing was published")
	assert.Empty(t, out.Commit.Seen, "nothing is marked seen")
	st := e.state(t)
	assert.Empty(t, st.Cursor, "the cursor waits for the acknowledgement")
	assert.Equal(t, 1, st.ConsecutiveFailures)
	assert.Contains(t, st.LastError, "timeout waiting for ack")
	assert.True(t, st.LastSuccess.IsZero())

	// The next poll publishes the same items again.
	e.pub.setFail(nil)
	e.clock.Advance(time.Minute)
	out = e.poll(t, newConn(returns(result("c1", items...))))
	require.NoError(t, out.Err)
	assert.Equal(t, []change{{"a", "1", bus.ChangeCreated}, {"b", "1", bus.ChangeCreated}}, changes(out.Signals))
	assert.Equal(t, 2, e.pub.published())
	assert.Equal(t, "c1", e.state(t).Cursor)
}

func TestRetries(t *testing.T) {
	errFlaky := errors.New("connection reset by peer")
	ok := returns(result("c1", item("a", "1")))
	tests := []struct {
		name         string
		max          int
		script       []step
		sleepErr     error
		wantAttempts int
		wantErr      bool
		wantSleeps   int
	}{
		{name: "fails twice then succeeds", max: 2, script: []step{fails(errFlaky), fails(errFlaky), ok}, wantAttempts: 3, wantSleeps: 2},
		{name: "succeeds at once", max: 2, script: []step{ok}, wantAttempts: 1},
		{name: "fails every time", max: 2, script: []step{fails(errFlaky)}, wantAttempts: 3, wantErr: true, wantSleeps: 2},
		{name: "no retries configured", max: 0, script: []step{fails(errFlaky), ok}, wantAttempts: 1, wantErr: true},
		{name: "cancelled while waiting", max: 5, script: []step{fails(errFlaky)}, sleepErr: context.Canceled, wantAttempts: 1, wantErr: true, wantSleeps: 1},
		{name: "ten retries", max: 10, script: []step{fails(errFlaky)}, wantAttempts: 11, wantErr: true, wantSleeps: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Connector{Name: "retry-test", Type: "fake", Interval: time.Hour, Timeout: time.Second,
				Retries: config.Retries{Max: tt.max, Backoff: 2 * time.Second}}
			var sleeps []time.Duration
			r := &poll.Runner{
				Publisher: &recorder{},
				Seen:      noneSeen{},
				Sleep: func(ctx context.Context, d time.Duration) error {
					sleeps = append(sleeps, d)
					return tt.sleepErr
				},
			}
			conn := newConn(tt.script...)
			out := r.Run(context.Background(), cfg, conn, store.State{}, nil)

			assert.Equal(t, tt.wantAttempts, out.Attempts)
			assert.Len(t, conn.calls(), tt.wantAttempts, "Attempts counts the connector's calls")
			require.Len(t, sleeps, tt.wantSleeps)
			for i, d := range sleeps {
				assert.GreaterOrEqual(t, d, time.Duration(0))
				assert.LessOrEqual(t, d, cfg.Retries.Backoff<<i, "wait before retry %d", i+1)
			}
			if !tt.wantErr {
				require.NoError(t, out.Err)
				assert.Len(t, out.Signals, 1)
				return
			}
			require.Error(t, out.Err)
			assert.ErrorIs(t, out.Err, errFlaky)
			if tt.sleepErr != nil {
				assert.ErrorIs(t, out.Err, tt.sleepErr)
			}
		})
	}
}

func TestRetriesStopWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := config.Connector{Name: "retry-test", Type: "fake", Interval: time.Hour, Timeout: time.Second,
		Retries: config.Retries{Max: 3, Backoff: time.Hour}}
	// The default Sleep: a real timer, which must not be waited for.
	r := &poll.Runner{Publisher: &recorder{}, Seen: noneSeen{}}
	conn := newConn(func(context.Context, connector.State) (connector.Result, error) {
		cancel() // the worker shuts down mid-poll
		return connector.Result{}, errors.New("connection reset by peer")
	})
	out := r.Run(ctx, cfg, conn, store.State{}, nil)
	require.Error(t, out.Err)
	assert.Equal(t, 1, out.Attempts)
	assert.Len(t, conn.calls(), 1)
}

func TestDefaultSleepRetries(t *testing.T) {
	cfg := config.Connector{Name: "retry-test", Type: "fake", Interval: time.Hour, Timeout: time.Second,
		Retries: config.Retries{Max: 2, Backoff: time.Millisecond}}
	r := &poll.Runner{Publisher: &recorder{}, Seen: noneSeen{}}
	errFlaky := errors.New("connection reset by peer")
	out := r.Run(context.Background(), cfg, newConn(fails(errFlaky), returns(result("c1", item("a", "1")))), store.State{}, nil)
	require.NoError(t, out.Err)
	assert.Equal(t, 2, out.Attempts)
	assert.Equal(t, "c1", out.Commit.State.Cursor)
}

// noneSeen is a SeenStore that has seen nothing.
type noneSeen struct{}

func (noneSeen) SeenEntries(_ context.Context, _ string, ids []string) ([]store.SeenEntry, error) {
	return make([]store.SeenEntry, len(ids)), nil
}

func (noneSeen) Seen(context.Context, string) (map[string]store.SeenEntry, error) {
	return map[string]store.SeenEntry{}, nil
}

func (noneSeen) SeenData(_ context.Context, _ string, ids []string) ([][]byte, error) {
	return make([][]byte, len(ids)), nil
}

// httpConn is a connector that GETs url through the shared upstream client,
// as a real connector does.
type httpConn struct {
	client *http.Client
	url    string
}

func (c httpConn) Poll(ctx context.Context, in connector.State) (connector.Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return connector.Result{}, err
	}
	upstream.Conditional(req, in)
	resp, err := c.client.Do(req)
	if err != nil {
		return connector.Result{}, err
	}
	defer resp.Body.Close()
	if err := upstream.CheckStatus(resp); err != nil {
		return connector.Result{}, err
	}
	if resp.StatusCode == http.StatusNotModified {
		return connector.Result{NotModified: true, State: upstream.Validators(resp, in)}, nil
	}
	var body struct {
		Items []struct{ ID, Version string }
	}
	if err := upstream.ReadJSON(resp, &body); err != nil {
		return connector.Result{}, err
	}
	res := connector.Result{State: upstream.Validators(resp, in)}
	for _, it := range body.Items {
		res.Items = append(res.Items, item(it.ID, it.Version))
	}
	return res, nil
}

func TestUpstreamAskedToWait(t *testing.T) {
	var hits atomic.Int32
	tooMany := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"message":"slow down"}`))
	}))
	t.Cleanup(tooMany.Close)
	exhausted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("RateLimit-Remaining", "0")
		w.Header().Set("RateLimit-Reset", "30")
		_, _ = w.Write([]byte(`{"items":[{"id":"a","version":"1"}]}`))
	}))
	t.Cleanup(exhausted.Close)

	e := newEnv(t)
	e.runner.Now = nil // the client records Retry-After against the real clock
	e.cfg.Retries = config.Retries{Max: 2, Backoff: time.Second}
	client := upstream.NewClient(upstream.Options{Allow: egress.Loopback()})

	t.Run("429 Retry-After: no retry, no poll before", func(t *testing.T) {
		out := e.poll(t, httpConn{client: client, url: tooMany.URL})
		require.Error(t, out.Err)
		var se *upstream.StatusError
		require.ErrorAs(t, out.Err, &se)
		assert.Equal(t, http.StatusTooManyRequests, se.StatusCode)
		assert.Equal(t, 1, out.Attempts, "retrying now would be rude")
		assert.EqualValues(t, 1, hits.Load())
		assert.Empty(t, e.sleeps)
		assert.WithinDuration(t, time.Now().Add(120*time.Second), out.Commit.State.NotBefore, 2*time.Second)
		assert.WithinDuration(t, time.Now().Add(120*time.Second), e.state(t).NotBefore, 2*time.Second)
		assert.Equal(t, store.WaitUpstream, e.state(t).NotBeforeBy, "the upstream's wait")
		assert.Contains(t, e.state(t).LastError, `429 Too Many Requests: {"message":"slow down"}`)
	})
	t.Run("a success with the rate limit exhausted", func(t *testing.T) {
		out := e.poll(t, httpConn{client: client, url: exhausted.URL})
		require.NoError(t, out.Err)
		assert.Len(t, out.Signals, 1)
		assert.WithinDuration(t, time.Now().Add(30*time.Second), e.state(t).NotBefore, 2*time.Second)
		assert.Equal(t, store.WaitUpstream, e.state(t).NotBeforeBy)
		assert.Zero(t, e.state(t).ConsecutiveFailures)
	})
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		failures int
		want     time.Duration // upper bound; the wait is within [want/2, want]
	}{
		{name: "no failure", interval: time.Minute, failures: 0, want: 0},
		{name: "first failure waits for the next tick", interval: time.Minute, failures: 1, want: 0},
		{name: "second doubles the interval", interval: time.Minute, failures: 2, want: 2 * time.Minute},
		{name: "third", interval: time.Minute, failures: 3, want: 4 * time.Minute},
		{name: "fourth", interval: time.Minute, failures: 4, want: 8 * time.Minute},
		{name: "capped at MaxBackoff", interval: time.Minute, failures: 5, want: poll.MaxBackoff},
		{name: "stays capped", interval: time.Minute, failures: 1000, want: poll.MaxBackoff},
		{name: "short interval", interval: time.Second, failures: 3, want: 4 * time.Second},
		{name: "interval past MaxBackoff is the cap", interval: time.Hour, failures: 2, want: time.Hour},
		{name: "interval past MaxBackoff stays the cap", interval: time.Hour, failures: 50, want: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			distinct := map[time.Duration]bool{}
			for range 200 {
				got := poll.Backoff(tt.interval, tt.failures)
				distinct[got] = true
				if tt.want == 0 {
					require.Zero(t, got)
					continue
				}
				require.GreaterOrEqual(t, got, tt.want/2)
				require.LessOrEqual(t, got, tt.want)
				require.LessOrEqual(t, got, max(tt.interval, poll.MaxBackoff))
			}
			if tt.want > 0 {
				assert.Greater(t, len(distinct), 1, "the wait is jittered")
			}
		})
	}
}

var errSentinel = errors.New("upstream refused")

func TestFailedCountsTheFailureAndSaysWhoseWaitItIs(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := config.Connector{Name: "feed", Interval: time.Minute}
	prev := store.State{Cursor: "c1", ETag: "e1", LastSuccess: now.Add(-time.Hour), ConsecutiveFailures: 2, Attempts: 3}
	tests := []struct {
		name      string
		prev      store.State
		notBefore time.Time
		wantBy    string
		min, max  time.Duration // the wait from now
	}{
		{name: "first failure waits for the next tick", prev: store.State{Cursor: "c1"}, wantBy: ""},
		{name: "third failure backs off", prev: prev, wantBy: store.WaitBackoff, min: 2 * time.Minute, max: 4 * time.Minute},
		{name: "the upstream's later wait wins", prev: prev, notBefore: now.Add(time.Hour), wantBy: store.WaitUpstream,
			min: time.Hour, max: time.Hour},
		{name: "the upstream's earlier wait loses", prev: prev, notBefore: now.Add(time.Second), wantBy: store.WaitBackoff,
			min: 2 * time.Minute, max: 4 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := poll.Failed(tt.prev, c, errSentinel, now, tt.notBefore)
			assert.Equal(t, tt.prev.ConsecutiveFailures+1, got.ConsecutiveFailures)
			assert.Equal(t, now, got.LastPoll)
			assert.Equal(t, errSentinel.Error(), got.LastError)
			assert.Equal(t, tt.prev.Cursor, got.Cursor, "a failure moves no cursor")
			assert.Equal(t, tt.prev.LastSuccess, got.LastSuccess)
			assert.Equal(t, tt.wantBy, got.NotBeforeBy)
			if tt.wantBy == "" {
				assert.True(t, got.NotBefore.IsZero(), "no wait: %s", got.NotBefore)
				return
			}
			assert.GreaterOrEqual(t, got.NotBefore.Sub(now), tt.min)
			assert.LessOrEqual(t, got.NotBefore.Sub(now), tt.max)
		})
	}
}

func TestErrorsAreRedacted(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	_, dialErr := http.Get(closedURL + "/v1/alerts?token=abc&page=2")
	require.Error(t, dialErr)

	tests := []struct {
		name   string
		err    error
		hidden []string
		kept   []string
		is     error
	}{
		{
			name:   "token in a URL",
			err:    fmt.Errorf(`get "https://api.example.com/v1/alerts?token=abc&page=2": %w`, errSentinel),
			hidden: []string{"abc"},
			kept:   []string{"https://api.example.com/v1/alerts?token=" + redact.Mask + "&page=2", "upstream refused"},
			is:     errSentinel,
		},
		{
			name:   "a known secret",
			err:    fmt.Errorf("authenticate with %s: %w", secret, errSentinel),
			hidden: []string{secret},
			kept:   []string{"authenticate with " + redact.Mask},
			is:     errSentinel,
		},
		{
			name:   "a real dial error quoting the URL",
			err:    dialErr,
			hidden: []string{"abc"},
			kept:   []string{"/v1/alerts?token=" + redact.Mask},
			is:     syscall.ECONNREFUSED,
		},
		{
			name: "nothing to hide",
			err:  fmt.Errorf("upstream answered 500: %w", errSentinel),
			kept: []string{"poll alerts-test: upstream answered 500: upstream refused"},
			is:   errSentinel,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			out := e.poll(t, newConn(fails(tt.err)))
			require.Error(t, out.Err)
			stored := e.state(t).LastError
			for _, text := range []string{out.Err.Error(), out.Commit.State.LastError, stored} {
				for _, h := range tt.hidden {
					assert.NotContains(t, text, h)
				}
				for _, k := range tt.kept {
					assert.Contains(t, text, k)
				}
			}
			assert.ErrorIs(t, out.Err, tt.is, "the chain survives redaction")
		})
	}
}

func TestNotModified(t *testing.T) {
	validators := connector.State{Cursor: "c1", ETag: `"e1"`, LastModified: "Tue, 03 Jun 2025 10:00:00 GMT"}
	tests := []struct {
		name string
		res  func(in connector.State) connector.Result
	}{
		{name: "connector hands the state back", res: func(in connector.State) connector.Result {
			return connector.Result{NotModified: true, State: in}
		}},
		{name: "connector returns no state", res: func(connector.State) connector.Result {
			return connector.Result{NotModified: true}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			out := e.poll(t, newConn(returns(connector.Result{Items: []connector.Item{item("a", "1")}, State: validators})))
			require.NoError(t, out.Err)
			require.Equal(t, 1, e.pub.published())

			e.clock.Advance(time.Minute)
			conn := newConn(func(_ context.Context, in connector.State) (connector.Result, error) { return tt.res(in), nil })
			out = e.poll(t, conn)
			require.NoError(t, out.Err)
			assert.True(t, out.NotModified)
			assert.Empty(t, out.Signals)
			assert.Zero(t, out.Fetched)
			assert.Equal(t, 1, e.pub.published())
			assert.Equal(t, []connector.State{validators}, conn.calls())

			st := e.state(t)
			assert.WithinDuration(t, e.clock.Now(), st.LastSuccess, 0, "a 304 is a success")
			assert.WithinDuration(t, e.clock.Now(), st.LastPoll, 0)
			assert.Equal(t, validators.Cursor, st.Cursor)
			assert.Equal(t, validators.ETag, st.ETag)
			assert.Equal(t, validators.LastModified, st.LastModified)
		})
	}
}

func TestNotModifiedThroughHTTP(t *testing.T) {
	const etag = `"v1"`
	const lastModified = "Tue, 03 Jun 2025 10:00:00 GMT"
	var conditional atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag && r.Header.Get("If-Modified-Since") == lastModified {
			conditional.Add(1)
			w.WriteHeader(http.StatusNotModified) // with the ETag only, as RFC 9110 asks
			return
		}
		w.Header().Set("Last-Modified", lastModified)
		_, _ = w.Write([]byte(`{"items":[{"id":"a","version":"1"}]}`))
	}))
	t.Cleanup(srv.Close)
	e := newEnv(t)
	conn := httpConn{client: upstream.NewClient(upstream.Options{Allow: egress.Loopback()}), url: srv.URL}

	out := e.poll(t, conn)
	require.NoError(t, out.Err)
	assert.Len(t, out.Signals, 1)

	for range 2 {
		e.clock.Advance(time.Minute)
		out = e.poll(t, conn)
		require.NoError(t, out.Err)
		assert.True(t, out.NotModified)
		assert.Empty(t, out.Signals)
		st := e.state(t)
		assert.Equal(t, etag, st.ETag)
		assert.Equal(t, lastModified, st.LastModified, "the 304 did not repeat Last-Modified; it is kept")
		assert.WithinDuration(t, e.clock.Now(), st.LastSuccess, 0)
	}
	assert.EqualValues(t, 2, conditional.Load(), "both later polls were conditional on both validators")
}

func TestSeenStoreFailure(t *testing.T) {
	e := newEnv(t)
	errRedis := errors.New("redis: connection pool timeout")
	e.runner.Seen = failingSeen{errRedis}
	e.noPrefetch = true
	out := e.poll(t, newConn(returns(result("c1", item("a", "1")))))
	require.Error(t, out.Err)
	assert.ErrorIs(t, out.Err, errRedis)
	assert.Contains(t, out.Err.Error(), "read seen items")
	assert.Zero(t, e.pub.published())
	assert.Empty(t, e.state(t).Cursor)
}

type failingSeen struct{ err error }

func (f failingSeen) SeenEntries(context.Context, string, []string) ([]store.SeenEntry, error) {
	return nil, f.err
}

func (f failingSeen) Seen(context.Context, string) (map[string]store.SeenEntry, error) {
	return nil, f.err
}

func (f failingSeen) SeenData(context.Context, string, []string) ([][]byte, error) { return nil, f.err }

func BenchmarkRunChangeDetection(b *testing.B) {
	const total, changed = 1000, 10
	e := newEnv(b)
	items := make([]connector.Item, total)
	for i := range items {
		items[i] = item(fmt.Sprintf("item-%04d", i), "v0")
	}
	conn := &scriptedItems{}
	conn.items.Store(&items)
	out := e.poll(b, conn)
	require.NoError(b, out.Err)
	require.Len(b, out.Signals, total)

	round := 0
	b.ReportAllocs()
	for b.Loop() {
		round++
		b.StopTimer()
		next := append([]connector.Item(nil), items...)
		for k := range changed {
			i := (round*changed + k) % total
			next[i] = item(next[i].ID, fmt.Sprintf("v%d", round))
		}
		items = next
		conn.items.Store(&next)
		b.StartTimer()

		out := e.poll(b, conn)
		if out.Err != nil || len(out.Signals) != changed {
			b.Fatalf("round %d: err %v, %d signals", round, out.Err, len(out.Signals))
		}
	}
}

// scriptedItems returns whatever items it holds, as one poll.
type scriptedItems struct {
	items atomic.Pointer[[]connector.Item]
}

func (s *scriptedItems) Poll(context.Context, connector.State) (connector.Result, error) {
	return connector.Result{Items: *s.items.Load()}, nil
}

func TestGuardRefusesThePublish(t *testing.T) {
	e := newEnv(t)
	errLost := errors.New("lease lost")
	e.guard = func(context.Context) error { return errLost }
	out := e.poll(t, newConn(returns(result("c1", item("a", "1")))))
	require.ErrorIs(t, out.Err, errLost)
	assert.Contains(t, out.Err.Error(), "not publishing")
	assert.Zero(t, e.pub.published(), "nothing was published")
	assert.Empty(t, e.state(t).Cursor, "and the cursor did not move")

	e.guard = func(context.Context) error { return nil }
	out = e.poll(t, newConn(returns(result("c1", item("a", "1")))))
	require.NoError(t, out.Err)
	assert.Equal(t, 1, e.pub.published())
}

func TestRepublishedSignalsAreCountedAsDuplicates(t *testing.T) {
	e := newEnv(t)
	// A poll publishes, then its commit is lost (the worker died): the next
	// poll publishes the same signal again, and the publisher says so.
	lease, prev, err := e.store.Acquire(context.Background(), e.cfg.Name, "w1", e.cfg.LeaseTTL, store.ClaimTick)
	require.NoError(t, err)
	out := e.runner.Run(context.Background(), e.cfg, newConn(returns(result("c1", item("a", "1")))), prev, nil)
	require.NoError(t, out.Err)
	assert.Zero(t, out.Duplicates)
	require.NoError(t, e.store.Release(context.Background(), lease))

	out = e.poll(t, newConn(returns(result("c1", item("a", "1")))))
	require.NoError(t, out.Err)
	assert.Len(t, out.Signals, 1)
	assert.Equal(t, 1, out.Duplicates)
}

func TestConnectorPanicFailsThePoll(t *testing.T) {
	e := newEnv(t)
	e.cfg.Retries.Max = 2
	conn := newConn(func(context.Context, connector.State) (connector.Result, error) {
		var m map[string]int
		m["boom"]++ // a nil map write: a panic
		return connector.Result{}, nil
	})
	out := e.poll(t, conn)
	var panicErr *poll.PanicError
	require.ErrorAs(t, out.Err, &panicErr)
	assert.Contains(t, out.Err.Error(), "connector panicked: assignment to entry in nil map")
	assert.Contains(t, string(panicErr.Stack), "poll_test.go", "the stack says where")
	assert.Len(t, conn.inputs, 1, "a panic is not retried")
	assert.Equal(t, 1, e.state(t).ConsecutiveFailures, "it fails like any poll")
}

func complete(cursor string, items ...connector.Item) connector.Result {
	res := result(cursor, items...)
	res.Complete = true
	return res
}

func TestCompleteListingsPublishDeletionsOnce(t *testing.T) {
	// A connector small enough for the lease to bring its seen versions,
	// and one whose poll reads them: the same deletions either way.
	for _, noPrefetch := range []bool{false, true} {
		t.Run(fmt.Sprintf("noPrefetch=%v", noPrefetch), func(t *testing.T) {
			e := newEnv(t)
			e.noPrefetch = noPrefetch
			out := e.poll(t, newConn(returns(complete("c1", item("a", "1"), item("b", "1"), item("c", "1")))))
			require.NoError(t, out.Err)
			assert.Len(t, out.Signals, 3)
			first := out.Signals[1]

			// b is gone: one deleted signal, with b's last version and data.
			e.clock.Advance(time.Minute)
			out = e.poll(t, newConn(returns(complete("c2", item("a", "1"), item("c", "2")))))
			require.NoError(t, out.Err)
			assert.Equal(t, []change{{"c", "2", bus.ChangeUpdated}, {"b", "1", bus.ChangeDeleted}}, changes(out.Signals))
			deleted := out.Signals[1]
			assert.JSONEq(t, `{"id":"b","version":"1"}`, string(deleted.GetData()), "the item's last known data")
			assert.EqualValues(t, 2, deleted.GetSequence(), "the item's second change")

			// Still gone: nothing more.
			e.clock.Advance(time.Minute)
			out = e.poll(t, newConn(returns(complete("c3", item("a", "1"), item("c", "2")))))
			require.NoError(t, out.Err)
			assert.Empty(t, out.Signals, "deleted once")

			// Back again: created, as its third change.
			e.clock.Advance(time.Minute)
			out = e.poll(t, newConn(returns(complete("c4", item("a", "1"), item("b", "1"), item("c", "2")))))
			require.NoError(t, out.Err)
			assert.Equal(t, []change{{"b", "1", bus.ChangeCreated}}, changes(out.Signals))
			assert.EqualValues(t, 3, out.Signals[0].GetSequence())
			assert.NotEqual(t, bus.SignalID(out.Signals[0]), bus.SignalID(first), "not a re-publish of its first creation")
		})
	}
}

func TestNoDeletionsWithoutACompleteListing(t *testing.T) {
	e := newEnv(t)
	out := e.poll(t, newConn(returns(complete("c1", item("a", "1"), item("b", "1")))))
	require.NoError(t, out.Err)

	cases := []struct {
		name string
		step step
	}{
		{"a listing that is not complete (max_pages, or no opt-in)", returns(result("c2", item("a", "1")))},
		{"a failed poll", fails(errors.New("503"))},
		{"a 304", returns(connector.Result{NotModified: true, Complete: true})},
		{"an item that cannot be named", returns(connector.Result{Complete: true,
			Items: []connector.Item{item("a", "1")}, Failed: []connector.ItemError{{ID: "features[3]", Err: errors.New("bad")}}})},
	}
	for _, tc := range cases {
		e.clock.Advance(time.Minute)
		out = e.poll(t, newConn(tc.step))
		assert.Empty(t, out.Signals, tc.name)
		assert.Empty(t, out.Commit.Forget, tc.name)
	}

	// A failed item that is b itself keeps b: only what is really absent goes.
	e.clock.Advance(time.Minute)
	out = e.poll(t, newConn(returns(connector.Result{Complete: true,
		Items: []connector.Item{item("a", "1")}, Failed: []connector.ItemError{{ID: "b", Err: errors.New("bad")}}})))
	require.NoError(t, out.Err)
	assert.Empty(t, out.Signals)
}

func TestSecretsAreRedactedFromSignalData(t *testing.T) {
	e := newEnv(t)
	echo := connector.Item{ID: "a", Version: "1", Data: json.RawMessage(`{"id":"a","echo":"token ` + secret + `"}`)}
	out := e.poll(t, newConn(returns(result("c1", echo))))
	require.NoError(t, out.Err)
	require.Len(t, out.Signals, 1)
	assert.NotContains(t, string(out.Signals[0].GetData()), secret)
	assert.JSONEq(t, `{"id":"a","echo":"token [REDACTED]"}`, string(out.Signals[0].GetData()))
}

// Every change of an item is a signal with the next sequence and an id of
// its own, a return to an earlier version included; the same change
// published again (its commit lost) keeps its sequence and id.
func TestEveryChangeHasItsOwnSequenceAndID(t *testing.T) {
	e := newEnv(t)
	var published []*pollgridv1.Signal
	for _, version := range []string{"A", "B", "A", "A", "B"} {
		e.clock.Advance(time.Minute)
		out := e.poll(t, newConn(returns(result("", item("x", version)))))
		require.NoError(t, out.Err)
		published = append(published, out.Signals...)
	}
	require.Len(t, published, 4, "A, B, A, B: the repeated A is no change")
	ids := map[string]bool{}
	for i, s := range published {
		assert.EqualValues(t, i+1, s.GetSequence())
		ids[bus.SignalID(s)] = true
	}
	assert.Len(t, ids, 4, "four changes, four ids")
	assert.Equal(t, []change{{"x", "A", bus.ChangeCreated}, {"x", "B", bus.ChangeUpdated}, {"x", "A", bus.ChangeUpdated}, {"x", "B", bus.ChangeUpdated}},
		changes(published))

	// A poll whose commit is lost, then the same answer again.
	ctx := context.Background()
	lease, prev, err := e.store.Acquire(ctx, e.cfg.Name, "w1", e.cfg.LeaseTTL, store.ClaimTrigger)
	require.NoError(t, err)
	lost := e.runner.Run(ctx, e.cfg, newConn(returns(result("", item("x", "A")))), prev, nil)
	require.NoError(t, lost.Err)
	require.NoError(t, e.store.Release(ctx, lease))
	again := e.poll(t, newConn(returns(result("", item("x", "A")))))
	require.Len(t, again.Signals, 1)
	assert.EqualValues(t, 5, again.Signals[0].GetSequence())
	assert.Equal(t, bus.SignalID(lost.Signals[0]), bus.SignalID(again.Signals[0]), "the same change: JetStream drops the re-publish")
}

// An unchanged item's entry is rewritten once a day, so that the items a
// listing keeps returning never age out, while the polls of one day write
// nothing for them.
func TestUnchangedItemsAreRefreshedOnceADay(t *testing.T) {
	e := newEnv(t)
	e.clock.now = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	out := e.poll(t, newConn(returns(result("", item("a", "1"), item("b", "1")))))
	require.Len(t, out.Commit.Seen, 2)
	e.clock.Advance(13 * time.Hour) // still the 7th
	out = e.poll(t, newConn(returns(result("", item("a", "1"), item("b", "1")))))
	assert.Empty(t, out.Commit.Seen)
	e.clock.Advance(time.Hour) // the 8th
	out = e.poll(t, newConn(returns(result("", item("a", "1"), item("b", "1")))))
	assert.Empty(t, out.Signals)
	require.Len(t, out.Commit.Seen, 2)
	assert.Equal(t, store.SeenEntry{Seq: 1, Day: store.Day(e.clock.Now()), Version: "1"}, out.Commit.Seen[0].Entry)
}

// At seen_cap the items seen longest ago that the answer does not hold are
// forgotten (to 95 % of the cap), never an item of the answer; an answer
// with more new items than the cap allows leaves the rest unpublished, as
// failed items, and publishes them once there is room.
func TestSeenCap(t *testing.T) {
	ids := func(prefix string, n int) []connector.Item {
		out := make([]connector.Item, n)
		for i := range out {
			out[i] = item(fmt.Sprintf("%s-%03d", prefix, i), "1")
		}
		return out
	}
	for _, noPrefetch := range []bool{false, true} {
		t.Run(fmt.Sprintf("noPrefetch=%v", noPrefetch), func(t *testing.T) {
			e := newEnv(t)
			e.noPrefetch = noPrefetch
			e.cfg.SeenCap = 100
			day := 24 * time.Hour

			out := e.poll(t, newConn(returns(result("", ids("old", 60)...))))
			require.Len(t, out.Signals, 60)
			e.clock.Advance(day)
			out = e.poll(t, newConn(returns(result("", ids("mid", 40)...))))
			require.Len(t, out.Signals, 40)
			assert.Zero(t, out.Forgotten, "100 fit")
			assert.Equal(t, 100, out.Remembered)

			// 10 new items: 60 + 40 + 10 is over 100; the oldest 15 go
			// (10 over, and 5 % of the cap to spare).
			e.clock.Advance(day)
			out = e.poll(t, newConn(returns(result("", append(ids("mid", 40), ids("new", 10)...)...))))
			require.Len(t, out.Signals, 10)
			assert.Equal(t, 15, out.Forgotten)
			assert.Equal(t, 95, out.Remembered)
			assert.Equal(t, []string{"old-000", "old-001"}, out.Commit.Forget[:2], "seen longest ago first, ties by id")
			assert.Empty(t, out.Failed)
			all, err := e.store.Seen(context.Background(), e.cfg.Name)
			require.NoError(t, err)
			assert.Len(t, all, 95)
			assert.Contains(t, all, "mid-000")

			// An answer of 120 new items: 95 are remembered (some forgotten
			// to make room), the other 25 wait, as failed items.
			e.clock.Advance(day)
			out = e.poll(t, newConn(returns(result("", ids("big", 120)...))))
			assert.Len(t, out.Signals, 100)
			assert.Equal(t, 20, out.Untracked)
			assert.Equal(t, 100, out.Remembered)
			require.Len(t, out.Failed, 20)
			assert.ErrorIs(t, out.Failed[0].Err, poll.ErrSeenCap)
			assert.Equal(t, "big-100", out.Failed[0].ID)
			all, err = e.store.Seen(context.Background(), e.cfg.Name)
			require.NoError(t, err)
			assert.Len(t, all, 100, "the cap holds")

			// The same answer again: nothing new is published twice, and the
			// 20 still wait (every remembered item is in the answer).
			e.clock.Advance(time.Minute)
			out = e.poll(t, newConn(returns(result("", ids("big", 120)...))))
			assert.Empty(t, out.Signals)
			assert.Equal(t, 20, out.Untracked)

			// The listing shrinks: the items it no longer holds make room.
			e.clock.Advance(day)
			out = e.poll(t, newConn(returns(result("", ids("big", 120)[50:]...))))
			assert.Len(t, out.Signals, 20, "the 20 that waited are published once")
			assert.Zero(t, out.Untracked)
		})
	}
}
