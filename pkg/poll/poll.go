// Package poll is the universal poll every connector runs through: state in,
// fetch (with retries), items out, change detection against the versions seen
// before, signals published and acknowledged, and the state to commit. It
// holds no lease and acks no tick: the worker wraps it with those.
package poll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/clock"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/redact"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/upstream"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// Publisher publishes a poll's signals and returns once JetStream has
// acknowledged every one of them, or with an error if any failed. It says
// how many JetStream dropped as duplicates (a re-publish within the
// duplicate window).
type Publisher interface {
	PublishSignals(ctx context.Context, signals []*pollgridv1.Signal) (duplicates int, err error)
}

// SeenStore returns what is remembered of items: SeenEntries for ids (the
// zero entry for never seen), Seen for every item (what deletions and the
// seen_cap need), SeenData the data kept for ids (what deletions carry).
type SeenStore interface {
	SeenEntries(ctx context.Context, connector string, ids []string) ([]store.SeenEntry, error)
	Seen(ctx context.Context, connector string) (map[string]store.SeenEntry, error)
	SeenData(ctx context.Context, connector string, ids []string) ([][]byte, error)
}

// Runner runs polls. Its fields are shared by every poll of a process.
type Runner struct {
	Publisher Publisher
	Seen      SeenStore
	// Redactor removes secrets from error texts kept in state and reports.
	Redactor *redact.Redactor
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Sleep waits between retries; clock.Sleep when nil.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Outcome is what one poll did and what to commit.
type Outcome struct {
	// Err is nil when the poll succeeded (its signals are acknowledged).
	Err error
	// Commit is the state to write under the lease, success or not.
	Commit store.Commit
	// Signals published and acknowledged, in item order; nil when the poll
	// failed (a failed publish counts as publishing nothing).
	Signals []*pollgridv1.Signal
	// Duplicates counts the Signals JetStream dropped as re-publishes of
	// signals it already had.
	Duplicates int
	// Fetched counts the items the upstream returned.
	Fetched int
	// Failed lists the items that could not be used; they do not fail the
	// poll. Untracked counts those among them left out because the
	// connector's seen_cap left no room to remember them.
	Failed    []connector.ItemError
	Untracked int
	// Forgotten counts the items forgotten to make room under seen_cap,
	// and Remembered how many the connector remembers after the commit.
	Forgotten  int
	Remembered int
	// NotModified is true when the upstream answered 304.
	NotModified bool
	// Attempts is how many times the connector was called.
	Attempts int
}

// Guard is asked right before a poll publishes its signals; an error (the
// poll's lease is gone) fails the poll with nothing published. nil asks
// nothing.
type Guard func(ctx context.Context) error

// Run polls conn once for c, starting from prev. A failed fetch (after
// c.Retries.Max retries), a guard that refuses, or a failed publish fails
// the poll: the commit then only records the failure and moves no cursor and
// no seen version.
func (r *Runner) Run(ctx context.Context, c config.Connector, conn connector.Connector, prev store.State, guard Guard) Outcome {
	now := r.now()
	out := Outcome{}
	ctx, obs := upstream.Observe(ctx)
	res, attempts, err := r.fetch(ctx, c, conn, prev, obs)
	out.Attempts = attempts
	if err == nil {
		err = r.publishChanges(ctx, c, prev, res, now, guard, &out)
	}
	notBefore, _ := obs.NotBefore()
	if err != nil {
		out.Err = r.clean(err)
		// Signals whose publish failed were not published: the report must
		// not count them (the next poll publishes them again).
		out.Signals = nil
		out.Commit = store.Commit{State: Failed(prev, c, out.Err, now, notBefore), Now: now}
		return out
	}
	next := prev
	// A 304 changes nothing upstream: a connector that answers it without
	// handing its state back must not wipe the cursor and validators.
	if !res.NotModified || res.State != (connector.State{}) {
		next.Cursor, next.ETag, next.LastModified = res.State.Cursor, res.State.ETag, res.State.LastModified
	}
	next.LastPoll, next.LastSuccess = now, now
	next.ConsecutiveFailures, next.LastError = 0, ""
	// A success can still say "slow down" (a rate limit just exhausted).
	next.NotBefore, next.NotBeforeBy = notBefore, ""
	if !notBefore.IsZero() {
		next.NotBeforeBy = store.WaitUpstream
	}
	out.Commit.State, out.Commit.Now = next, now
	out.Commit.Fetched = !res.NotModified
	return out
}

// Failed is the state a failed poll of c commits, from prev: the failure
// counted, err's text kept as the last error (clean it of secrets first),
// and the wait it earns, whose it is: the back-off, or the upstream's
// notBefore (zero: none asked) when that ends later. Every failed poll's
// state is built here, the worker's refusal of a crash loop included.
func Failed(prev store.State, c config.Connector, err error, now, notBefore time.Time) store.State {
	failed := prev
	failed.LastPoll = now
	failed.ConsecutiveFailures++
	failed.LastError = err.Error()
	failed.NotBefore, failed.NotBeforeBy = now.Add(Backoff(c.Interval, failed.ConsecutiveFailures)), store.WaitBackoff
	if notBefore.After(failed.NotBefore) {
		failed.NotBefore, failed.NotBeforeBy = notBefore, store.WaitUpstream
	}
	if !failed.NotBefore.After(now) {
		failed.NotBefore, failed.NotBeforeBy = time.Time{}, ""
	}
	return failed
}

// MaxBackoff caps how long a failing connector waits between polls (unless
// its interval is longer).
const MaxBackoff = 15 * time.Minute

// Backoff is how long a connector waits after its n-th consecutive failed
// poll, on top of nothing: the first failure waits for the next tick as
// usual, then the wait doubles from the interval, with jitter, up to
// MaxBackoff.
func Backoff(interval time.Duration, failures int) time.Duration {
	if failures <= 1 {
		return 0
	}
	ceiling := max(interval, MaxBackoff)
	d := interval
	for i := 1; i < failures && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	// Full jitter over the upper half keeps failing connectors apart.
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// clean keeps secrets and URL credentials out of an error's text, keeping
// its chain for errors.Is / errors.As.
func (r *Runner) clean(err error) error {
	msg := r.Redactor.String(redact.URLsIn(err.Error()))
	if msg == err.Error() {
		return err
	}
	return &cleanError{msg: msg, err: err}
}

type cleanError struct {
	msg string
	err error
}

func (e *cleanError) Error() string { return e.msg }
func (e *cleanError) Unwrap() error { return e.err }

// fetch calls the connector through the poll's middleware: the
// connector's timeout per attempt, a panic made an error, and
// c.Retries.Max retries with exponential backoff and full jitter. It says
// how many times the connector was called.
func (r *Runner) fetch(ctx context.Context, c config.Connector, conn connector.Connector, prev store.State, obs *upstream.Observation) (connector.Result, int, error) {
	calls := 0
	call := Chain(conn.Poll,
		Retry(RetryPolicy{
			Max: c.Retries.Max, Backoff: c.Retries.Backoff, Sleep: r.sleep, Calls: &calls,
			Asked: func() bool { nb, _ := obs.NotBefore(); return nb.After(r.now()) },
		}),
		Timeout(c.Timeout),
		Recover)
	res, err := call(ctx, connector.State{Cursor: prev.Cursor, ETag: prev.ETag, LastModified: prev.LastModified})
	if err != nil {
		return connector.Result{}, calls, fmt.Errorf("poll %s: %w", c.Name, err)
	}
	return res, calls, nil
}

// publishChanges compares the items with what is remembered of them,
// publishes a signal per created, updated or deleted item, and has the
// commit remember what changed (and, once a day, what was seen unchanged,
// so that items still present never age out).
func (r *Runner) publishChanges(ctx context.Context, c config.Connector, prev store.State, res connector.Result, now time.Time, guard Guard, out *Outcome) error {
	out.NotModified = res.NotModified
	out.Failed = append(out.Failed, res.Failed...)
	out.Fetched = len(res.Items) + len(res.Failed)
	items := r.usable(res.Items, out)
	out.Remembered = prev.SeenCount
	d := &diff{r: r, c: c, prev: prev, out: out, today: store.Day(now), observed: timestamppb.New(now)}
	if err := d.items(ctx, items, res.Complete); err != nil {
		return err
	}
	if res.Complete && !res.NotModified {
		if err := d.deletions(ctx, res); err != nil {
			return err
		}
	}
	out.Failed = append(out.Failed, d.untracked...)
	out.Untracked = len(d.untracked)
	if len(out.Signals) == 0 {
		return nil
	}
	if guard != nil {
		if err := guard(ctx); err != nil {
			return fmt.Errorf("poll %s: not publishing: %w", c.Name, err)
		}
	}
	dups, err := r.Publisher.PublishSignals(ctx, out.Signals)
	if err != nil {
		return fmt.Errorf("poll %s: publish signals: %w", c.Name, err)
	}
	out.Duplicates = dups
	return nil
}

// usable drops items without id or version, with invalid JSON data, or
// repeated within the poll (the first wins), recording each as failed.
// When it drops none it returns items itself: most answers are whole, and
// a poll then makes no copy of them, nor a set of their ids when they are
// few.
func (r *Runner) usable(items []connector.Item, out *Outcome) []connector.Item {
	var kept []connector.Item // once one is dropped; until then, items[:i]
	dropped := false
	var ids map[string]struct{}
	if len(items) > smallAnswer {
		ids = make(map[string]struct{}, len(items))
	}
	for i, it := range items {
		var err error
		switch {
		case it.ID == "":
			err = errors.New("item has no id")
		case it.Version == "":
			err = errors.New("item has no version")
		case len(it.Data) > 0 && !json.Valid(it.Data):
			err = errors.New("item data is not valid JSON")
		}
		if err == nil {
			before := kept
			if !dropped {
				before = items[:i]
			}
			if repeated(it.ID, before, ids) {
				err = errors.New("item id repeated in one poll")
			}
		}
		if err != nil {
			if !dropped {
				kept, dropped = append(items[:0:0], items[:i]...), true
			}
			id := it.ID
			if id == "" {
				id = fmt.Sprintf("items[%d]", i)
			}
			out.Failed = append(out.Failed, connector.ItemError{ID: id, Err: err})
			continue
		}
		if ids != nil {
			ids[it.ID] = struct{}{}
		}
		if dropped {
			kept = append(kept, it)
		}
	}
	if !dropped {
		return items
	}
	return kept
}

// smallAnswer is how many items usable checks for repeated ids by looking
// through those before, rather than with a set.
const smallAnswer = 8

// repeated reports whether id is among the items kept before it: in ids
// when there is a set, else in before.
func repeated(id string, before []connector.Item, ids map[string]struct{}) bool {
	if ids != nil {
		_, ok := ids[id]
		return ok
	}
	for _, it := range before {
		if it.ID == id {
			return true
		}
	}
	return false
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) sleep(ctx context.Context, d time.Duration) error {
	if r.Sleep != nil {
		return r.Sleep(ctx, d)
	}
	return clock.Sleep(ctx, d)
}
