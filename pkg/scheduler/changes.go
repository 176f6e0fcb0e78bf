package scheduler

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
)

// applyChanges brings in line the schedules of the connectors whose
// scheduling changed since the last pass (Index.TakeDirty): it reads only
// their installed definitions, installs the new or changed ones, removes
// those of connectors deleted, disabled, paused or no longer valid, and sends
// a new connector its first tick, as sync does for all of them. When took
// is not nil, each connector the pass took is set in it, true when it has a
// schedule afterwards.
func (s *Scheduler) applyChanges(ctx context.Context, took map[string]bool) error {
	started := time.Now()
	// A key written around pollctl may name no valid connector; it has
	// no schedule, and must not become a wildcard of the read below.
	names := slices.DeleteFunc(s.index.TakeDirty(), func(name string) bool { return !bus.ValidToken(name) })
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	defined := s.lookup(names)
	s.forgetDeleted(defined, names)
	s.withEffective(defined)
	s.warnIgnoredJitter(defined)
	active, err := s.active(ctx, defined)
	if err != nil {
		return err
	}
	if took != nil {
		for _, name := range names {
			_, scheduled := find(active, name)
			took[name] = scheduled
		}
	}
	state := make([]uint8, len(active))
	had := make([]bool, len(names)) // which of names had a schedule
	var remove []removal
	var failed error
	err = s.installedOf(ctx, names, func(have definition) {
		name := connectorOf(have.subject)
		if j, ok := slices.BinarySearch(names, name); ok {
			had[j] = true
		}
		gone, err := compare(active, have, state)
		failed = cmp.Or(failed, err)
		if gone {
			remove = append(remove, have.removal())
		}
	})
	if err = cmp.Or(err, failed); err != nil {
		return err
	}
	before := 0
	for _, h := range had {
		if h {
			before++
		}
	}
	fresh, install := partition(active, state)
	if err := s.apply(ctx, fresh, install, remove); err != nil {
		return err
	}
	s.metrics.scheduled.Add(float64(len(active) - before))
	if len(install)+len(remove) > 0 {
		s.log.Info("schedules changed with the catalog", "connectors", len(names), "installed", len(install),
			"new", len(fresh), "removed", len(remove), "took", time.Since(started).Round(time.Millisecond).String())
	}
	return nil
}

// lookupAll is how many changed connectors make a change pass read the
// whole index once rather than each connector alone: a lookup counts its
// budget's sharers, so the sharers of one large budget, changed together
// when one joins it, would take quadratic time one by one.
const lookupAll = 64

// lookup returns the connectors of names (sorted) that the index holds,
// sorted by name; the others were deleted or fail their check.
func (s *Scheduler) lookup(names []string) []catalog.Defined {
	if len(names) > lookupAll {
		all := s.index.Connectors()
		out := all[:0] // filtered in place: out never passes the connector read
		j := 0
		for _, c := range all {
			for j < len(names) && names[j] < c.Name {
				j++
			}
			if j < len(names) && names[j] == c.Name {
				out = append(out, c)
			}
		}
		return out
	}
	out := make([]catalog.Defined, 0, len(names))
	for _, name := range names {
		if c, ok := s.index.Connector(name); ok {
			out = append(out, c)
		}
	}
	return out
}
