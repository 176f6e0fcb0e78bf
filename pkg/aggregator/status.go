package aggregator

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/redact"
	"github.com/pollgrid/pollgrid/pkg/scheduler"
	"github.com/pollgrid/pollgrid/pkg/store"
)

// The aggregator owns health and freshness: it serves the list and status
// verbs, the status page and the health gauges, all from one view that
// joins the config, each connector's state (what the workers commit, so it
// does not lag) and its metrics (what the aggregator records).

// DefaultStaleAfter is how many missed intervals make a connector stale
// unless AGGREGATOR_STALE_AFTER says otherwise.
const DefaultStaleAfter = 3

// Connectors are the connectors defined; *catalog.Index is one.
type Connectors interface {
	Connectors() []catalog.Defined
	Connector(name string) (catalog.Defined, bool)
	// Synced is closed once every definition is read.
	Synced() <-chan struct{}
}

// syncWait bounds how long a view waits for the catalog's first read (at
// start): a partial list would look like connectors gone.
const syncWait = 10 * time.Second

// synced waits until the connectors are read.
func (a *Aggregator) synced(ctx context.Context) error {
	select {
	case <-a.opts.Connectors.Synced():
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-time.After(syncWait):
		return admin.Errorf(admin.CodeUnavailable, "the aggregator is still reading the connector catalog (NATS KV %s): ask again in a moment", catalog.Bucket)
	}
}

// view reads every defined connector's row, worst health first.
func (a *Aggregator) view(ctx context.Context, now time.Time) ([]admin.Connector, error) {
	if err := a.synced(ctx); err != nil {
		return nil, err
	}
	defined := a.opts.Connectors.Connectors()
	names := make([]string, len(defined))
	for i, c := range defined {
		names[i] = c.Name
	}
	states, err := a.store.States(ctx, names)
	if err != nil {
		return nil, fmt.Errorf("read connector states from Redis: %w", err)
	}
	all, err := a.history.AllMetrics(ctx, a.opts.HealthyWindow, now)
	if err != nil {
		return nil, fmt.Errorf("read connector metrics from Redis: %w", err)
	}
	metrics := make(map[string]history.ConnectorMetrics, len(all))
	for _, m := range all {
		metrics[m.Name] = m
	}
	rows := make([]admin.Connector, len(defined))
	for i, c := range defined {
		rows[i] = a.row(c.Connector(), states[i], metrics[c.Name], now)
	}
	slices.SortFunc(rows, func(x, y admin.Connector) int {
		return cmp.Or(cmp.Compare(admin.HealthRank(x.Health), admin.HealthRank(y.Health)), strings.Compare(x.Name, y.Name))
	})
	return rows, nil
}

// row is one connector's line: health, freshness and metrics.
func (a *Aggregator) row(c config.Connector, st store.State, m history.ConnectorMetrics, now time.Time) admin.Connector {
	r := admin.Connector{
		Name: c.Name, Type: c.Type, Enabled: c.Enabled, Paused: !st.PausedAt.IsZero(), Interval: c.Interval.String(),
		LastPoll: timeOrNil(st.LastPoll), LastSuccess: timeOrNil(st.LastSuccess), LastErrorAt: m.LastErrorAt,
		LastError:           a.clean(st.LastError),
		ConsecutiveFailures: st.ConsecutiveFailures,
		PausedAt:            timeOrNil(st.PausedAt), PausedBy: st.PausedBy,
		Polls: m.Polls, Failures: m.Failures, SuccessRate: m.SuccessRate, LatencyP95Seconds: m.LatencyP95Seconds,
	}
	if !st.LastSuccess.IsZero() {
		staleness := now.Sub(st.LastSuccess).Seconds()
		r.StalenessSeconds = &staleness
		r.Healthy = now.Sub(st.LastSuccess) <= a.opts.HealthyWindow
	}
	if st.NotBefore.After(now) {
		r.BackoffUntil = &st.NotBefore
		r.BackoffSeconds = st.NotBefore.Sub(now).Seconds()
		r.BackoffBy = st.NotBeforeBy
	}
	// The connector was last due at its last poll, the end of a back-off,
	// or its resume; never polled, at this replica's start.
	due := latest(st.LastPoll, st.NotBefore, st.ResumedAt)
	if due.IsZero() {
		due = a.started
	}
	// An adaptive connector is due at its effective interval.
	scheduled := c
	if c.Adaptive.On() {
		scheduled.Interval = c.ScheduledInterval(st.EffectiveInterval)
		r.Adaptive, r.EffectiveInterval = c.Adaptive.String(), config.DurationText(scheduled.Interval)
	}
	// A connector on a budget is due no more often than its fair share:
	// waiting for its turn is not missing a poll.
	interval := scheduled.Interval
	if c.Budget.Name != "" {
		interval = max(interval, c.Budget.Fair())
	}
	if missed := int64(now.Sub(due)/interval) - 1; missed > 0 {
		r.MissedIntervals = missed
	}
	running := c.Enabled && !r.Paused
	r.Stale = running && r.MissedIntervals >= int64(a.opts.StaleAfter)
	switch {
	case !c.Enabled:
		r.Health = admin.HealthDisabled
	case r.Paused:
		r.Health = admin.HealthPaused
	case st.ConsecutiveFailures > 0:
		r.Health = admin.HealthFailing
	case r.Stale:
		r.Health = admin.HealthStale
	case st.LastPoll.IsZero():
		r.Health = admin.HealthNew
	default:
		r.Health = admin.HealthOK
	}
	if running {
		next := NextFire(scheduled, now, st.LastPoll)
		if st.NotBefore.After(next) {
			next = NextFire(scheduled, st.NotBefore, st.LastPoll)
		}
		if !next.IsZero() {
			r.NextDue = &next
		}
	}
	return r
}

// effectiveIntervals is the effective interval of each adaptive connector
// among names, for the gauges; the others are left out.
func (a *Aggregator) effectiveIntervals(ctx context.Context, names []string) (map[string]time.Duration, error) {
	var adaptive []config.Connector
	var adaptiveNames []string
	for _, name := range names {
		if d, ok := a.opts.Connectors.Connector(name); ok && d.Adaptive.On() {
			adaptive = append(adaptive, d.Connector())
			adaptiveNames = append(adaptiveNames, name)
		}
	}
	if len(adaptive) == 0 {
		return nil, nil
	}
	held, err := a.store.EffectiveIntervals(ctx, adaptiveNames)
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Duration, len(adaptive))
	for _, c := range adaptive {
		out[c.Name] = c.ScheduledInterval(held[c.Name])
	}
	return out, nil
}

// NextFire is when the connector's schedule fires next after now: its cron
// phase (scheduler.Spec), or for an "@every" schedule, whose phase depends
// on when it was installed, an interval after the last poll (zero when it
// never polled).
func NextFire(c config.Connector, now, lastPoll time.Time) time.Time {
	if strings.HasPrefix(scheduler.Spec(c.Name, c.Interval), "@every") {
		if lastPoll.IsZero() {
			return time.Time{}
		}
		return later(lastPoll.Add(c.Interval), now)
	}
	// Cron intervals divide a minute, an hour or a day, so they divide the
	// seconds since the epoch in UTC: the fires are the instants t with
	// t mod interval = phase.
	interval := int64(c.Interval / time.Second)
	phase := int64(scheduler.Phase(c.Name, c.Interval) / time.Second)
	secs := now.Unix()
	next := secs - ((secs-phase)%interval+interval)%interval
	if next <= secs {
		next += interval
	}
	return time.Unix(next, 0).UTC()
}

// clean keeps secrets and URL credentials out of what the views show.
func (a *Aggregator) clean(s string) string {
	if s == "" {
		return ""
	}
	return a.opts.Redactor.String(redact.URLsIn(s))
}

// List is the list verb.
func (a *Aggregator) List(ctx context.Context, data []byte) (any, error) {
	var req admin.ListRequest
	if err := admin.Decode(data, &req); err != nil {
		return nil, err
	}
	return a.list(ctx, req, time.Now())
}

func (a *Aggregator) list(ctx context.Context, req admin.ListRequest, now time.Time) (admin.ListReply, error) {
	if req.Health != "" {
		if admin.HealthRank(req.Health) < 0 {
			return admin.ListReply{}, admin.Errorf(admin.CodeBadRequest, "health %q is none of failing, stale, new, paused, ok, disabled", req.Health)
		}
	}
	if req.Offset < 0 || req.Limit < 0 {
		return admin.ListReply{}, admin.Errorf(admin.CodeBadRequest, "offset and limit must not be negative")
	}
	limit := req.Limit
	if limit == 0 {
		limit = admin.DefaultLimit
	}
	limit = min(limit, admin.MaxLimit)
	rows, err := a.view(ctx, now)
	if err != nil {
		return admin.ListReply{}, admin.Errorf(admin.CodeUnavailable, "%v", err)
	}
	reply := admin.ListReply{
		Counts: map[string]int{}, Offset: req.Offset, StaleAfter: a.opts.StaleAfter,
		HealthyWindow: a.opts.HealthyWindow.String(), At: now, Connectors: []admin.Connector{},
	}
	types := map[string]bool{}
	matched := rows[:0:0]
	query := strings.ToLower(req.Query)
	for _, r := range rows {
		reply.Counts[r.Health]++
		types[r.Type] = true
		if (query == "" || strings.Contains(r.Name, query)) && (req.Type == "" || r.Type == req.Type) &&
			(req.Health == "" || r.Health == req.Health) {
			matched = append(matched, r)
		}
	}
	reply.Types = make([]string, 0, len(types))
	for t := range types {
		reply.Types = append(reply.Types, t)
	}
	slices.Sort(reply.Types)
	reply.Total = len(matched)
	if req.Offset < len(matched) {
		reply.Connectors = matched[req.Offset:min(req.Offset+limit, len(matched))]
	}
	// A page of 1,000 rows must fit a NATS message (1 MB by default): the
	// whole error is in status. Shortened, a row keeps the error's cause.
	for i := range reply.Connectors {
		reply.Connectors[i].LastError = admin.ShortError(reply.Connectors[i].LastError, maxListError)
	}
	return reply, nil
}

// Status is the status verb.
func (a *Aggregator) Status(ctx context.Context, data []byte) (any, error) {
	var req admin.NameRequest
	if err := admin.Decode(data, &req); err != nil {
		return nil, err
	}
	return a.status(ctx, req.Name, time.Now())
}

func (a *Aggregator) status(ctx context.Context, name string, now time.Time) (admin.Status, error) {
	if err := a.synced(ctx); err != nil {
		return admin.Status{}, err
	}
	d, ok := a.opts.Connectors.Connector(name)
	if !ok {
		return admin.Status{}, admin.Errorf(admin.CodeNotFound, "no connector named %q in the catalog (pollctl list shows them; "+
			"pollctl apply adds one)", name)
	}
	c := d.Connector()
	unavailable := func(err error) (admin.Status, error) {
		return admin.Status{}, admin.Errorf(admin.CodeUnavailable, "status %s: %v", name, err)
	}
	st, err := a.store.State(ctx, name)
	if err != nil {
		return unavailable(err)
	}
	m, _, err := a.history.Metrics(ctx, name, a.opts.HealthyWindow, now)
	if err != nil {
		return unavailable(err)
	}
	lease, err := a.store.Lease(ctx, name)
	if err != nil {
		return unavailable(err)
	}
	seen, err := a.store.SeenCount(ctx, name)
	if err != nil {
		return unavailable(err)
	}
	recent, err := a.history.Recent(ctx, name, 0)
	if err != nil {
		return unavailable(err)
	}
	s := admin.Status{
		Connector: a.row(c, st, m, now),
		Cursor:    a.clean(st.Cursor), ETag: a.clean(st.ETag), LastModified: a.clean(st.LastModified),
		Generation: st.Generation, SeenItems: seen,
		Lease:   admin.LeaseInfo{Holder: lease.Owner, Token: lease.Token, ExpiresInSeconds: lease.Remaining.Seconds(), Fence: lease.Fence},
		Skipped: m.Skipped, ItemsPublished: m.ItemsPublished, LatencyAvg: m.LatencyAvgSeconds,
		Recent: make([]admin.Poll, 0, len(recent)),
	}
	if c.Budget.Name != "" {
		s.Budget = a.budgetUse(ctx, c.Budget, now)
	}
	for _, r := range recent {
		p := admin.PollOf(r)
		p.Error = a.clean(p.Error)
		if p.RateLimited {
			s.RateLimited++
		}
		s.Recent = append(s.Recent, p)
	}
	return s, nil
}

// budgetUse is a connector's budget and, when Redis answers, what it has
// left: status still answers without it.
func (a *Aggregator) budgetUse(ctx context.Context, b config.Budget, now time.Time) *admin.BudgetUse {
	u := &admin.BudgetUse{Name: b.Name, Rate: b.Rate(), Connectors: b.Connectors, FairEverySeconds: b.Fair().Seconds(), Remaining: -1}
	if a.opts.Budgets == nil {
		u.Error = "this aggregator reads no budgets"
		return u
	}
	left, err := a.opts.Budgets.Use(ctx, b)
	if err != nil {
		u.Error = err.Error()
		return u
	}
	u.Remaining, u.NextAt, u.FullAt = left.Remaining, &left.NextAt, &left.FullAt
	return u
}

// maxListError is how much of a last error a list row carries, in runes.
const maxListError = 300

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		out = later(out, t)
	}
	return out
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
