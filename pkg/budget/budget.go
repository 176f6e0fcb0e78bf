// Package budget keeps the rate-limit budgets connectors share across every
// worker (connectors.json's "budgets"): before each upstream request, pages
// and retries included, a poll draws from its connector's budget in Redis.
//
// The algorithm is GCRA, from github.com/go-redis/redis_rate (one EVALSHA
// per draw: the hot path's only cost). Its one key per budget,
// "<prefix>:budget:<name>", holds the budget's theoretical arrival time;
// this package adds one script of its own on that key, Block, which pushes
// it to when the upstream said its limit resets, so that every worker on
// the budget waits for the upstream's word (redis_rate v10's layout: a
// float of seconds since 2017-01-01 on Redis's clock; TestBlock holds the
// two together).
//
// Fairness comes from the draw's priority: a connector polled recently
// draws only when the budget has tokens to spare, one that has gone long
// without a poll may take the last token (Share). The age comes from the
// connector's state, which the lease acquire reads anyway, so it costs no
// call and is the same whichever worker polls it.
package budget

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/store"
)

// Limiter draws from budgets kept in Redis. It is safe for concurrent use.
type Limiter struct {
	rate    *redis_rate.Limiter
	rdb     redis.UniversalClient
	keys    store.Keys
	block   *redis.Script
	peek    *redis.Script
	metrics *metrics
}

// New returns a Limiter over rdb with keys under keys.Prefix; its metrics
// register with reg (nil: none, for a reader of budgets such as the
// aggregator's status views).
func New(rdb redis.UniversalClient, keys store.Keys, reg prometheus.Registerer) (*Limiter, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Limiter{
		rate:    redis_rate.NewLimiter(unprefixed{rdb}),
		rdb:     rdb,
		keys:    keys,
		block:   redis.NewScript(blockLua),
		peek:    redis.NewScript(peekLua),
		metrics: m,
	}, nil
}

// Key is the budget's Redis key.
func (l *Limiter) Key(name string) string { return l.keys.Global("budget:" + name) }

// Draw is one draw's answer.
type Draw struct {
	// Allowed is true when the request may go now.
	Allowed bool
	// Remaining is how many more requests the budget would allow now.
	Remaining int
	// RetryAfter is how long until a draw at the same priority would be
	// allowed; zero when Allowed.
	RetryAfter time.Duration
}

// Draw takes one request from b at priority level (0 to Levels(b)): a
// draw at level p is allowed only while the budget keeps more than
// Levels(b)-p requests, so the lower levels leave the last ones to the
// higher. One EVALSHA.
func (l *Limiter) Draw(ctx context.Context, b config.Budget, level int) (Draw, error) {
	top := Levels(b)
	level = min(max(level, 0), top)
	burst := b.Burst - top + level
	res, err := l.rate.Allow(ctx, l.Key(b.Name), redis_rate.Limit{Rate: b.Limit, Period: b.Per, Burst: burst})
	if err != nil {
		return Draw{}, fmt.Errorf("budget %s: draw: %w", b.Name, err)
	}
	d := Draw{Allowed: res.Allowed > 0, Remaining: res.Remaining + top - level}
	if !d.Allowed {
		d.Remaining, d.RetryAfter = 0, max(res.RetryAfter, 0)
		if level < top {
			d.Remaining = -1 // unknown: the higher levels may still draw
		}
	}
	if d.Remaining >= 0 {
		l.metrics.remaining.WithLabelValues(b.Name).Set(float64(d.Remaining))
	}
	return d, nil
}

// Declare starts the metrics of the budgets named, at zero, so that a
// budget nobody has waited for yet shows 0 rather than nothing.
func (l *Limiter) Declare(names []string) {
	for _, name := range names {
		l.metrics.waits.WithLabelValues(name)
		l.metrics.deferrals.WithLabelValues(name)
		l.metrics.blocks.WithLabelValues(name)
	}
}

// Levels is the highest priority level of b: its burst less one. A budget
// with a burst of 1 has one level, and its draws are first come, first
// served.
func Levels(b config.Budget) int { return max(b.Burst-1, 0) }

// Block makes every draw of b wait until until at least: the upstream said
// its limit is spent until then. After it, the budget refills from empty.
func (l *Limiter) Block(ctx context.Context, b config.Budget, until time.Time) error {
	return l.Cap(ctx, b, until, 0)
}

// Cap leaves b at most remaining requests before until: the upstream said
// it has that many left until its reset. A budget with less left already
// is left alone, and so is one the upstream leaves more than b.Burst-1
// (Share.Follow does not even ask).
func (l *Limiter) Cap(ctx context.Context, b config.Budget, until time.Time, remaining int) error {
	emission := b.Per.Seconds() / float64(b.Limit)
	err := l.block.Run(ctx, l.rdb, []string{l.Key(b.Name)},
		float64(until.UnixMicro())/1e6, emission*float64(b.Burst-1-remaining)).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("budget %s: follow the upstream until %s: %w", b.Name, until.UTC().Format(time.RFC3339), err)
	}
	l.metrics.blocks.WithLabelValues(b.Name).Inc()
	return nil
}

// blockLua sets the budget's theoretical arrival time (redis_rate's value,
// seconds since 2017-01-01) to ARGV[1] (unix seconds) plus ARGV[2]
// ((burst-1-remaining) emission intervals), never earlier than it already
// is: then at most remaining draws are allowed before ARGV[1], none when 0.
const blockLua = `
local jan_1_2017 = 1483228800
local now = redis.call('TIME')
now = (now[1] - jan_1_2017) + (now[2] / 1000000)
local tat = tonumber(ARGV[1]) - jan_1_2017 + tonumber(ARGV[2])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur >= tat or tat <= now then
  return 0
end
redis.call('SET', KEYS[1], tostring(tat), 'EX', math.ceil(tat - now))
return 1
`

// unprefixed keeps redis_rate's keys under pollgrid's prefix: the library
// writes "rate:<key>", and a Redis ACL that allows "~pollgrid:*" only
// would refuse it.
type unprefixed struct{ redis.UniversalClient }

const libraryPrefix = "rate:"

func strip(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = strings.TrimPrefix(k, libraryPrefix)
	}
	return out
}

func (u unprefixed) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.Eval(ctx, script, strip(keys), args...)
}

func (u unprefixed) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.EvalSha(ctx, sha1, strip(keys), args...)
}

func (u unprefixed) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.EvalRO(ctx, script, strip(keys), args...)
}

func (u unprefixed) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.EvalShaRO(ctx, sha1, strip(keys), args...)
}

func (u unprefixed) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return u.UniversalClient.Del(ctx, strip(keys)...)
}

// metrics are labelled by budget only: a file has a handful of budgets.
type metrics struct {
	remaining *prometheus.GaugeVec
	waits     *prometheus.CounterVec
	deferrals *prometheus.CounterVec
	blocks    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pollgrid_budget_remaining", Help: "Requests the budget allowed at once at this worker's last draw from it.",
		}, []string{"budget"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_budget_waits_total", Help: "Upstream requests that waited for their budget (the poll went on).",
		}, []string{"budget"}),
		deferrals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_budget_deferrals_total", Help: "Polls deferred to a later tick because their budget was spent (skipped, not failed).",
		}, []string{"budget"}),
		blocks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_budget_upstream_blocks_total", Help: "Times an upstream said its limit was spent or nearly (rate-limit headers, " +
				"Retry-After) and the budget was lowered to its word for every worker on it.",
		}, []string{"budget"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.remaining, m.waits, m.deferrals, m.blocks} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("budget metrics: %w", err)
		}
	}
	return m, nil
}
