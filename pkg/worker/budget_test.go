package worker

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/budget"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/upstream"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// TestSpentBudgetDefersThePollWithoutFailingIt: a connector whose budget
// is spent for longer than its poll can wait is skipped, with a reason
// that names the budget and when it refills; it counts no failure, earns
// no back-off and keeps its last poll (its turn comes sooner).
func TestSpentBudgetDefersThePollWithoutFailingIt(t *testing.T) {
	c := feed()
	c.Budget = config.Budget{Name: "gh", Limit: 1, Per: time.Hour, Burst: 1, Connectors: 1}
	fx := newFixture(t, Options{}, c)
	limiter, err := budget.New(fx.rdb, fx.st.Keys(), prometheus.NewRegistry())
	require.NoError(t, err)
	fx.w.opts.Budgets = limiter

	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { requests++ }))
	defer srv.Close()
	client := upstream.NewClient(upstream.Options{Allow: egress.Loopback()})
	fx.onPoll(func(ctx context.Context, _ connector.State) (connector.Result, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			return connector.Result{}, fmt.Errorf("get: %w", err)
		}
		resp.Body.Close()
		return connector.Result{}, nil
	})

	fx.w.run(context.Background(), tickOf(c), &answers{})
	require.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, fx.onlyReport(t).GetOutcome())
	polled := fx.state(t, "feed").LastPoll
	require.False(t, polled.IsZero())

	ack := &answers{}
	fx.w.run(context.Background(), tickOf(c), ack)
	reports := fx.reports()
	require.Len(t, reports, 2)
	report := reports[1]
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED, report.GetOutcome(), report.GetError())
	assert.Contains(t, report.GetError(), "budget gh is spent: it refills at ")
	assert.Contains(t, report.GetError(), "deferred to a later tick")
	assert.Equal(t, []string{"ack"}, ack.list())
	assert.Equal(t, 1, requests, "the upstream saw the budget's one request")
	st := fx.state(t, "feed")
	assert.Zero(t, st.ConsecutiveFailures, "a deferral is no failure")
	assert.True(t, st.NotBefore.IsZero(), "and earns no back-off")
	assert.Equal(t, polled, st.LastPoll, "its last poll stays, so its turn on the budget comes sooner")
	assert.Zero(t, st.Attempts, "the lease is released")
}

// TestUpstreamsWordHoldsForEveryConnectorOnTheBudget: one connector's
// answer says the upstream's limit is spent until a reset; the next
// connector on the same budget is deferred until then without asking.
func TestUpstreamsWordHoldsForEveryConnectorOnTheBudget(t *testing.T) {
	shared := config.Budget{Name: "github-main", Limit: 5000, Per: time.Hour, Burst: 50, Connectors: 2}
	first, second := feed(), feed()
	second.Name = "feed2"
	first.Budget, second.Budget = shared, shared
	fx := newFixture(t, Options{}, first, second)
	limiter, err := budget.New(fx.rdb, fx.st.Keys(), prometheus.NewRegistry())
	require.NoError(t, err)
	fx.w.opts.Budgets = limiter

	reset := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests++
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	}))
	defer srv.Close()
	client := upstream.NewClient(upstream.Options{Allow: egress.Loopback()})
	fx.onPoll(func(ctx context.Context, _ connector.State) (connector.Result, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			return connector.Result{}, fmt.Errorf("get: %w", err)
		}
		resp.Body.Close()
		return connector.Result{}, nil
	})

	tk := tickOf(first)
	tk.BudgetSharers = 2
	fx.w.run(context.Background(), tk, &answers{})
	require.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, fx.onlyReport(t).GetOutcome())
	assert.Equal(t, store.WaitUpstream, fx.state(t, "feed").NotBeforeBy, "the connector that was told keeps its own wait")

	tk = tickOf(second)
	tk.BudgetSharers = 2
	fx.w.run(context.Background(), tk, &answers{})
	reports := fx.reports()
	require.Len(t, reports, 2)
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED, reports[1].GetOutcome(), reports[1].GetError())
	assert.Contains(t, reports[1].GetError(), "budget github-main is spent: it refills at "+reset.UTC().Format(time.RFC3339))
	assert.Equal(t, 1, requests, "the other connector did not ask")
}
