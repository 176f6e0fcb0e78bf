package worker

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

func TestNextEffectiveInterval(t *testing.T) {
	a := config.Adaptive{Min: 10 * time.Second, Max: 10 * time.Minute}
	const interval = time.Minute
	tests := []struct {
		name  string
		floor time.Duration
		prev  time.Duration
		found found
		want  time.Duration
	}{
		{"changes: min at once", 0, 5 * time.Minute, foundChanges, 10 * time.Second},
		{"no change: half as long again", 0, 20 * time.Second, foundNoChange, 30 * time.Second},
		{"no change, again", 0, 30 * time.Second, foundNoChange, 45 * time.Second},
		{"no change: capped at max", 0, 8 * time.Minute, foundNoChange, 10 * time.Minute},
		{"no change at max stays at max", 0, 10 * time.Minute, foundNoChange, 10 * time.Minute},
		{"a failed or deferred poll leaves it", 0, 45 * time.Second, foundNothing, 45 * time.Second},
		{"the first poll starts from the interval", 0, 0, foundNoChange, 90 * time.Second},
		{"a first poll that failed keeps the interval", 0, 0, foundNothing, time.Minute},
		{"changes on a budget: its fair share, not min", 20 * time.Second, 5 * time.Minute, foundChanges, 20 * time.Second},
		{"a fair share above max: max", time.Hour, time.Minute, foundChanges, 10 * time.Minute},
		{"bounds narrowed since: back within them", 0, time.Hour, foundNothing, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, nextEffective(a, interval, tt.floor, tt.prev, tt.found))
		})
	}
}

// fakeClock is a settable Options.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func adaptiveFeed() config.Connector {
	c := feed()
	c.Adaptive = config.Adaptive{Min: 10 * time.Second, Max: 10 * time.Minute}
	c.Timeout = 5 * time.Second
	return c
}

// adaptTick is a tick of c fired by a schedule at every.
func adaptTick(c config.Connector, every time.Duration) tick {
	tk := tickOf(c)
	tk.Interval = durationpb.New(every)
	return tk
}

// adaptRequests subscribes to the scheduler's subject on the fixture's NATS.
func adaptRequests(t *testing.T, fx *fixture) *nats.Subscription {
	t.Helper()
	sub, err := fx.js.Conn().SubscribeSync(bus.AdaptSubject)
	require.NoError(t, err)
	require.NoError(t, fx.js.Conn().Flush())
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return sub
}

func nextAdapt(t *testing.T, sub *nats.Subscription) bus.Adapt {
	t.Helper()
	msg, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err, "a request to the scheduler")
	var req bus.Adapt
	require.NoError(t, json.Unmarshal(msg.Data, &req))
	return req
}

func noAdapt(t *testing.T, fx *fixture, sub *nats.Subscription) {
	t.Helper()
	// A round trip to the server after the poll: a request published
	// before it has arrived by then.
	require.NoError(t, fx.js.Conn().Flush())
	msg, err := sub.NextMsg(100 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "no request expected, got %s", func() string {
		if msg != nil {
			return string(msg.Data)
		}
		return ""
	}())
}

// The rule step by step through real polls: the effective interval is in
// the connector's Redis state after each, and the scheduler is asked when
// the tick fires at another interval, at most once per two minutes.
func TestAdaptiveIntervalFollowsWhatPollsFind(t *testing.T) {
	c := adaptiveFeed()
	clock := &fakeClock{now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	fx := newFixture(t, Options{Now: clock.Now}, c)
	sub := adaptRequests(t, fx)
	version := 0
	changes := true
	fx.onPoll(func(context.Context, connector.State) (connector.Result, error) {
		if changes {
			version++
		}
		return connector.Result{Items: []connector.Item{{ID: "a", Version: string(rune('0' + version)), Data: []byte(`{}`)}}}, nil
	})

	// The first poll finds the item: a change. E drops to min; the tick
	// fired at the configured minute, so the scheduler is asked for 10s.
	fx.w.run(context.Background(), adaptTick(c, time.Minute), &answers{})
	st := fx.state(t, "feed")
	assert.Equal(t, 10*time.Second, st.EffectiveInterval)
	assert.Equal(t, clock.Now(), st.AdaptRequestedAt)
	req := nextAdapt(t, sub)
	assert.Equal(t, bus.Adapt{Connector: "feed", Type: feedType, IntervalSeconds: 10, Revision: req.Revision}, req)
	assert.Positive(t, req.Revision, "the revision of the definition it was computed from")

	// Nothing new: E grows by half, 15s then 22.5s. The ticks still fire at
	// a minute (the request was lost, say), but two minutes have not passed.
	changes = false
	clock.advance(time.Minute)
	fx.w.run(context.Background(), adaptTick(c, time.Minute), &answers{})
	assert.Equal(t, 15*time.Second, fx.state(t, "feed").EffectiveInterval)
	noAdapt(t, fx, sub)
	clock.advance(59 * time.Second)
	fx.w.run(context.Background(), adaptTick(c, time.Minute), &answers{})
	assert.Equal(t, 22500*time.Millisecond, fx.state(t, "feed").EffectiveInterval)
	noAdapt(t, fx, sub)

	// Two minutes after the last request: asked again, rounded to whole
	// seconds (33.75s -> 34s).
	clock.advance(time.Second)
	fx.w.run(context.Background(), adaptTick(c, time.Minute), &answers{})
	assert.Equal(t, 33750*time.Millisecond, fx.state(t, "feed").EffectiveInterval)
	assert.Equal(t, int64(34), nextAdapt(t, sub).IntervalSeconds)
	assert.Equal(t, clock.Now(), fx.state(t, "feed").AdaptRequestedAt)

	// Ticks that fire at the interval asked for ask nothing, however long after.
	clock.advance(time.Hour)
	fx.w.run(context.Background(), adaptTick(c, 51*time.Second), &answers{})
	assert.Equal(t, 50625*time.Millisecond, fx.state(t, "feed").EffectiveInterval)
	noAdapt(t, fx, sub)

	// A failed poll leaves E as it was (and its failure is committed).
	fx.onPoll(func(context.Context, connector.State) (connector.Result, error) {
		return connector.Result{}, errors.New("upstream down")
	})
	fx.w.run(context.Background(), adaptTick(c, 51*time.Second), &answers{})
	st = fx.state(t, "feed")
	assert.Equal(t, 1, st.ConsecutiveFailures)
	assert.Equal(t, 50625*time.Millisecond, st.EffectiveInterval)
	noAdapt(t, fx, sub)

	// A 304 is no change; many of them reach max and stay there.
	fx.onPoll(func(context.Context, connector.State) (connector.Result, error) {
		return connector.Result{NotModified: true}, nil
	})
	for range 10 {
		fx.w.run(context.Background(), adaptTick(c, 51*time.Second), &answers{})
	}
	assert.Equal(t, 10*time.Minute, fx.state(t, "feed").EffectiveInterval)
	assert.Equal(t, int64(76), nextAdapt(t, sub).IntervalSeconds, "asked at the first (50.625s × 1.5), then not: the clock did not move")
	noAdapt(t, fx, sub)
	clock.advance(DefaultAdaptEvery)
	fx.w.run(context.Background(), adaptTick(c, 76*time.Second), &answers{})
	assert.Equal(t, int64(600), nextAdapt(t, sub).IntervalSeconds)
	for _, r := range fx.reports() {
		assert.NotEqual(t, pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED, r.GetOutcome(), r.GetError())
	}
}

// E is never below the connector's fair share of its budget.
func TestAdaptiveIntervalStaysAtItsBudgetsFairShare(t *testing.T) {
	c := adaptiveFeed()
	c.Budget = config.Budget{Name: "gh", Limit: 60, Per: time.Minute, Burst: 5}
	fx := newFixture(t, Options{}, c)
	sub := adaptRequests(t, fx)
	fx.onPoll(func(context.Context, connector.State) (connector.Result, error) {
		return connector.Result{Items: []connector.Item{{ID: "a", Version: "1", Data: []byte(`{}`)}}}, nil
	})
	tk := adaptTick(c, time.Minute)
	tk.BudgetSharers = 40 // 60 a minute shared by 40: a request every 40 s each, above min
	fx.w.run(context.Background(), tk, &answers{})
	assert.Equal(t, 40*time.Second, fx.state(t, "feed").EffectiveInterval, "changes found, but min 10s is below the fair share")
	assert.Equal(t, int64(40), nextAdapt(t, sub).IntervalSeconds)
}

// E lives in Redis: a poll by another worker continues from it, and a
// connector no longer adaptive has it cleared.
func TestAdaptiveIntervalSurvivesAcrossWorkers(t *testing.T) {
	c := adaptiveFeed()
	fx := newFixture(t, Options{}, c)
	fx.onPoll(func(context.Context, connector.State) (connector.Result, error) {
		return connector.Result{NotModified: true}, nil
	})
	fx.w.run(context.Background(), adaptTick(c, time.Minute), &answers{})
	require.Equal(t, 90*time.Second, fx.state(t, "feed").EffectiveInterval)

	// Another worker process: its own Redis client, the same Redis.
	other, err := New(fx.js, store.New(fx.redis.Client(t), store.Options{}), fx.types, fx.cat, Options{ID: "other"})
	require.NoError(t, err)
	other.run(context.Background(), adaptTick(c, time.Minute), &answers{})
	assert.Equal(t, 135*time.Second, fx.state(t, "feed").EffectiveInterval, "90s × 1.5: it went on from the first worker's")

	fixed := feed()
	revisions := fx.define(t, fixed)
	tk := adaptTick(fixed, time.Minute)
	tk.Revision = revisions["feed"]
	fx.w.run(context.Background(), tk, &answers{})
	st := fx.state(t, "feed")
	assert.Zero(t, st.EffectiveInterval, "no longer adaptive")
	assert.True(t, st.AdaptRequestedAt.IsZero())
}

// A triggered poll moves E but asks nothing: no tick says what its
// schedule fires at.
func TestTriggeredPollOfAnAdaptiveConnectorAsksNothing(t *testing.T) {
	c := adaptiveFeed()
	fx := newFixture(t, Options{}, c)
	sub := adaptRequests(t, fx)
	fx.onPoll(func(context.Context, connector.State) (connector.Result, error) {
		return connector.Result{Items: []connector.Item{{ID: "a", Version: "1", Data: []byte(`{}`)}}}, nil
	})
	_, err := fx.w.Trigger(context.Background(), []byte(`{"name": "feed"}`))
	require.NoError(t, err)
	assert.Equal(t, 10*time.Second, fx.state(t, "feed").EffectiveInterval)
	noAdapt(t, fx, sub)
}
