package budget

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/pollgrid/pollgrid/pkg/config"
)

// Use is what a budget has left, as an operator reads it.
type Use struct {
	// Remaining is how many requests the budget allows at once now.
	Remaining int
	// NextAt is when it allows the next request: now when Remaining > 0,
	// later while it is spent (or blocked by the upstream's word).
	NextAt time.Time
	// FullAt is when it is whole again (its burst), if nothing draws.
	FullAt time.Time
}

// Use reads b's state without drawing from it: one read-only script (Redis's
// clock and the key), for status views.
func (l *Limiter) Use(ctx context.Context, b config.Budget) (Use, error) {
	v, err := l.peek.Run(ctx, l.rdb, []string{l.Key(b.Name)}).Text()
	if err != nil {
		return Use{}, fmt.Errorf("budget %s: read: %w", b.Name, err)
	}
	debt, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return Use{}, fmt.Errorf("budget %s: read: %q is not a number", b.Name, v)
	}
	return useOf(b, time.Duration(debt*float64(time.Second)), time.Now()), nil
}

// useOf is the Use of b whose theoretical arrival time is debt ahead of now.
func useOf(b config.Budget, debt time.Duration, now time.Time) Use {
	emission := time.Duration(float64(b.Per) / float64(b.Limit))
	debt = max(debt, 0)
	burst := time.Duration(b.Burst) * emission
	u := Use{FullAt: now.Add(debt), NextAt: now}
	if debt <= burst-emission {
		u.Remaining = int(math.Floor(float64(burst-debt) / float64(emission)))
	} else {
		u.NextAt = now.Add(debt - (burst - emission))
	}
	return u
}

// peekLua returns how far the budget's theoretical arrival time is ahead of
// Redis's clock, in seconds (0 or less: full).
const peekLua = `
local jan_1_2017 = 1483228800
local now = redis.call('TIME')
now = (now[1] - jan_1_2017) + (now[2] / 1000000)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
return tostring(math.max(tat - now, 0))
`
