// Package demo is a connector that reaches no upstream: it makes up a few
// items from the clock, and one of them changes every change_every. It is
// what `make run` shows offline, and a smoke test for a pipeline ("does my
// consumer get signals?"), like Benthos's generate input or Kafka Connect's
// Datagen.
//
// Everything is a function of the time, so that every worker polling the
// same connector computes the same items: time is cut into periods of
// change_every, counted from the Unix epoch, and in period k the item
// k mod items gets a new version, the start of that period.
package demo

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"time"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

// TypeName is the connector type in connectors.json.
const TypeName = "demo"

const (
	// DefaultItems is how many items a demo connector has by default.
	DefaultItems = 5
	maxItems     = 1000
	// DefaultChangeEvery is how often one item changes by default: a new
	// user sees an update within seconds.
	DefaultChangeEvery = "10s"
	// minChangeEvery and maxChangeEvery bound change_every: faster than a
	// second is a load test, not a demo, and a day is as still as it gets.
	minChangeEvery = time.Second
	maxChangeEvery = 24 * time.Hour
	// versionLayout is RFC 3339 in UTC with milliseconds: fixed width, so
	// that an item's versions sort as its changes happened.
	versionLayout = "2006-01-02T15:04:05.000Z07:00"
)

var _ connector.Factory = New

// Config is the "config" object of a demo connector; spec describes its
// fields.
type Config struct {
	Items       *int   `json:"items,omitempty"`
	ChangeEvery string `json:"change_every,omitempty"`
}

var spec = connector.Spec{
	Summary: "Made-up items, one of which changes every change_every: signals with no upstream, for a first run or a smoke test.",
	Fields: []connector.Field{
		{Name: "items", Kind: connector.Int, Default: DefaultItems, Range: connector.Between(1, maxItems),
			Description: "How many items there are: `demo-1`, `demo-2`, ... The first poll publishes each as `created`."},
		{Name: "change_every", Kind: connector.Duration, Default: DefaultChangeEvery, Example: "1m",
			Description: "How often one item changes, in turn (`demo-1`, then `demo-2`, ...), and is published as `updated`. " +
				"A Go duration from `\"1s\"` to `\"24h\"`. Polling more often than this publishes nothing in between; " +
				"polling less often publishes every item that changed meanwhile, at its latest version."},
	},
}

// Spec describes the config's fields.
func (Config) Spec() connector.Spec { return spec }

// ApplyDefaults fills the fields left out.
func (c *Config) ApplyDefaults() {
	connector.SetDefault(&c.Items, DefaultItems)
	c.ChangeEvery = cmp.Or(c.ChangeEvery, DefaultChangeEvery)
}

// Validate reports every problem the spec cannot tell. It does no I/O.
func (c Config) Validate() error {
	every, err := time.ParseDuration(c.ChangeEvery)
	if err != nil {
		return nil // not a duration: the spec's check has said so
	}
	if every < minChangeEvery || every > maxChangeEvery {
		return fmt.Errorf(`config.change_every: %q is out of range (write a duration from "1s" to "24h"; default %q)`,
			c.ChangeEvery, DefaultChangeEvery)
	}
	return nil
}

// New builds a demo connector from its config. It does no I/O, and neither
// does its Poll.
func New(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	return connector.Build(TypeName, raw, deps, func(cfg Config, deps connector.Deps) (connector.Connector, error) {
		every, _ := time.ParseDuration(cfg.ChangeEvery) // validated
		return &poller{items: *cfg.Items, every: every, now: time.Now, logger: deps.Logger}, nil
	})
}

// poller keeps only its config between polls; State carries the rest.
type poller struct {
	items  int
	every  time.Duration
	now    func() time.Time // the wall clock; a test sets its own
	logger *slog.Logger
}

// Poll returns every item as it is now. The cursor is the start of the
// newest period a poll has published, and a poll never goes back before
// it: a worker whose clock is a little behind another's publishes nothing
// rather than an item's previous version.
func (p *poller) Poll(ctx context.Context, state connector.State) (connector.Result, error) {
	if err := ctx.Err(); err != nil {
		return connector.Result{}, fmt.Errorf("demo: %w", err)
	}
	now := p.now()
	if newest := connector.TimeCursor(ctx, p.logger, state.Cursor, "reading the clock alone"); newest.After(now) {
		now = newest
	}
	items, err := p.itemsAt(now)
	if err != nil {
		return connector.Result{}, fmt.Errorf("demo: %w", err)
	}
	state.Cursor = p.periodStart(p.period(now)).Format(time.RFC3339Nano)
	return connector.Result{Items: items, State: state}, nil
}

// Reading is an item's Data.
type Reading struct {
	ID string `json:"id"`
	// Reading is a number from 0 to 99.9 that each version of the item
	// draws anew (from a hash of its id and version).
	Reading float64 `json:"reading"`
	// ChangedAt is when the item last changed: its version, as a time.
	ChangedAt string `json:"changed_at"`
}

// period is the number of the period t falls in (t before 1970 is
// period 0).
func (p *poller) period(t time.Time) int64 {
	return max(t.UnixNano(), 0) / int64(p.every)
}

func (p *poller) periodStart(k int64) time.Time {
	return time.Unix(0, k*int64(p.every)).UTC()
}

// itemsAt is every item at time t, in id order: item i (from 0) last
// changed in the latest period up to t's that is i modulo the item count.
func (p *poller) itemsAt(t time.Time) ([]connector.Item, error) {
	now := p.period(t)
	n := int64(p.items)
	items := make([]connector.Item, 0, p.items)
	for i := range n {
		changed := now - ((now-i)%n+n)%n
		version := p.periodStart(changed).Format(versionLayout)
		id := "demo-" + strconv.FormatInt(i+1, 10)
		data, err := json.Marshal(Reading{ID: id, Reading: reading(id, version), ChangedAt: version})
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", id, err)
		}
		items = append(items, connector.Item{ID: id, Version: version, Data: data})
	}
	return items, nil
}

// reading draws an item version's number: the same on every worker, and
// unrelated from one version to the next.
func reading(id, version string) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(version))
	return float64(h.Sum64()%1000) / 10
}
