package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/clock"
)

// The state of a wanted schedule, as reading the installed ones finds it.
const (
	// missing: no schedule under its subject, so the connector is new (or
	// its schedule was lost) and may get a first tick.
	missing uint8 = iota
	// differs: another definition is installed under its subject.
	differs
	// current: its definition is installed as it should be.
	current
)

// sync brings every installed schedule in line with the index (a full
// sync): it installs missing or changed definitions, removes those of
// connectors no longer enabled (or paused, or gone), with any tick still
// pending for them, and sends a connector whose schedule was missing and
// whose last poll is more than an interval ago (or never happened) its first
// tick now. It takes the index's dirty set first: what changes from then on
// is left to the next change pass.
//
// Between two pages a periodic sync yields (resyncPause), and every sync
// runs a change pass, so that a change made during a long sync (a minute at
// a million connectors) waits for a page, not for the sync. The sync's own
// decisions come from the index as it was when it began, so it leaves alone
// every connector a pass took meanwhile: the pass read a newer definition
// than the sync's, and installed, changed or removed that connector's
// schedule already.
func (s *Scheduler) sync(ctx context.Context, periodic bool) error {
	started := time.Now()
	s.index.TakeDirty()
	all := s.index.Connectors()
	if !s.jitterWarned {
		s.warnIgnoredJitter(all)
		s.jitterWarned = true
	}
	s.forgetDeleted(all, nil)
	s.withEffective(all)
	active, err := s.active(ctx, all)
	if err != nil {
		return err
	}
	// Reading the installed definitions page by page marks each wanted one
	// it finds; the wanted definitions are encoded one at a time to compare,
	// so that a sync of 100,000 connectors holds no second copy of them.
	state := make([]uint8, len(active))
	var remove []removal
	var failed error
	changed := map[string]bool{} // by the passes between pages: connector → has a schedule
	between := func(ctx context.Context, took time.Duration) error {
		if periodic {
			if err := s.resyncPause(ctx, took); err != nil {
				return err
			}
		}
		return s.applyChanges(ctx, changed)
	}
	err = s.eachInstalled(ctx, between, func(have definition) {
		gone, err := compare(active, have, state)
		failed = cmp.Or(failed, err)
		if gone {
			remove = append(remove, have.removal())
		}
	})
	if err = cmp.Or(err, failed); err != nil {
		return err
	}
	remove, scheduled := leaveTaken(active, state, remove, changed)
	fresh, install := partition(active, state)
	if err := s.apply(ctx, fresh, install, remove); err != nil {
		return err
	}
	s.metrics.scheduled.Set(float64(scheduled))
	s.metrics.fullSyncs.Observe(time.Since(started).Seconds())
	if len(install)+len(remove) > 0 {
		s.log.Info("schedules in line with the catalog", "connectors", len(active), "installed", len(install),
			"new", len(fresh), "removed", len(remove), "took", time.Since(started).Round(time.Millisecond).String())
	}
	return nil
}

// leaveTaken marks current, in state, the connectors of active that a
// change pass took during the sync (changed: connector → has a schedule
// after it), drops their removals, and counts the connectors scheduled
// once the sync has applied the rest.
func leaveTaken(active []catalog.Defined, state []uint8, remove []removal, changed map[string]bool) ([]removal, int) {
	if len(changed) == 0 {
		return remove, len(active)
	}
	scheduled := 0
	for i, c := range active {
		if _, took := changed[c.Name]; took {
			state[i] = current // in line already, with a newer definition
		} else {
			scheduled++
		}
	}
	for _, has := range changed {
		if has {
			scheduled++
		}
	}
	return slices.DeleteFunc(remove, func(r removal) bool {
		_, took := changed[connectorOf(r.schedule)]
		return took
	}), scheduled
}

// apply queues the first ticks of fresh and sends those the pace allows
// (first.go), installs the definitions of install (fresh is its head) and
// removes remove.
func (s *Scheduler) apply(ctx context.Context, fresh, install []catalog.Defined, remove []removal) error {
	// First ticks first: a new connector's poll need not wait for the
	// schedules of 100,000 others to be installed.
	if err := s.sendFirstTicks(ctx, s.first.add(fresh, time.Now())); err != nil {
		return err
	}
	if err := s.install(ctx, install); err != nil {
		return err
	}
	return s.remove(ctx, remove)
}

// partition reorders cs, and state with it, in place: the missing first,
// then those that differ, then the current. It returns the missing
// (fresh) and both (install).
func partition(cs []catalog.Defined, state []uint8) (fresh, install []catalog.Defined) {
	n := 0
	for _, want := range []uint8{missing, differs} {
		for i := n; i < len(cs); i++ {
			if state[i] == want {
				cs[n], cs[i] = cs[i], cs[n]
				state[n], state[i] = state[i], state[n]
				n++
			}
		}
		if want == missing {
			fresh = cs[:n]
		}
	}
	return fresh, cs[:n]
}

// find looks a connector up in cs, which is sorted by name.
func find(cs []catalog.Defined, name string) (int, bool) {
	return slices.BinarySearchFunc(cs, name, func(c catalog.Defined, name string) int { return cmp.Compare(c.Name, name) })
}

// eachInstalled hands fn every schedule definition stored in TICKS, reading
// them in pages of readPage; between two pages it calls between, if not
// nil, with how long the page took.
func (s *Scheduler) eachInstalled(ctx context.Context, between func(context.Context, time.Duration) error, fn func(definition)) error {
	for seq := uint64(1); ; {
		began := time.Now()
		msgs, err := jetstreamext.GetBatch(ctx, s.js, bus.TicksStream, readPage,
			jetstreamext.GetBatchSeq(seq), jetstreamext.GetBatchSubject(bus.SchedulePrefix+".>"))
		if err != nil {
			return fmt.Errorf("read schedules from %s: %w", bus.TicksStream, err)
		}
		n, pending := 0, ""
		for m, err := range msgs {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read schedules from %s: %w", bus.TicksStream, err)
			}
			fn(definitionOf(m))
			seq = m.Sequence + 1
			n++
			pending = m.Header.Get(numPendingHeader)
		}
		// A page ends short at the end, or at the server's byte limit: the
		// last message says how many followed it when the page began.
		if n < readPage && pending == "0" {
			return nil
		}
		if between != nil {
			if err := between(ctx, time.Since(began)); err != nil {
				return err
			}
		}
	}
}

// resyncPace is how many times as long as a page took a periodic resync
// waits before the next: reading a million schedules and comparing them
// at full speed holds both cores of a small machine for tens of seconds
// (nats-server sending them, the scheduler comparing), and the polls due
// meanwhile waited for the CPU (make bench, million: 2.6 s late at p99
// then, 1.3 s at most paced). The sync at election, after a failure or
// when asked for goes at full speed.
const resyncPace = 2

// pauseForPace is resyncPause: it waits resyncPace times took.
func pauseForPace(ctx context.Context, took time.Duration) error {
	return clock.Sleep(ctx, resyncPace*took)
}

// readPage is how many definitions one page of eachInstalled holds. Each
// page costs nats-server two counts of the matching subjects over the
// whole stream (TICKS keeps one message a subject, and its definitions are
// a subject each): at a million connectors that is ~40 ms a count, so
// pages of 1,000 made one resync cost it 80 s of CPU. 10,000 definitions
// are ~4 MB, well inside a subscription's pending limits.
const readPage = 10_000

// numPendingHeader is how many messages a batch read still had to send
// after the one carrying it.
const numPendingHeader = "Nats-Num-Pending"

// installedOf hands fn the schedule definitions stored in TICKS for the
// connectors named, whatever their type: a page of multi-subject reads
// rather than a read of every schedule.
func (s *Scheduler) installedOf(ctx context.Context, names []string, fn func(definition)) error {
	subjects := make([]string, 0, installedPage)
	for page := range slices.Chunk(names, installedPage) {
		subjects = subjects[:0]
		for _, name := range page {
			subjects = append(subjects, bus.ScheduleSubject("*", name))
		}
		msgs, err := jetstreamext.GetLastMsgsFor(ctx, s.js, bus.TicksStream, subjects)
		if err != nil {
			return fmt.Errorf("read schedules from %s: %w", bus.TicksStream, err)
		}
		for m, err := range msgs {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				break
			}
			if err != nil {
				return fmt.Errorf("read schedules from %s: %w", bus.TicksStream, err)
			}
			fn(definitionOf(m))
		}
	}
	return nil
}

// installedPage is how many connectors one multi-subject read asks for:
// nats-server answers at most 1024 messages to one, and a connector whose
// type changed may have two schedules for a moment.
const installedPage = 500

// compare sorts one installed schedule against the connectors wanted
// (active, sorted by name): gone when no connector wants it any more or
// its type changed; else its connector's state says current or differs.
func compare(active []catalog.Defined, have definition, state []uint8) (gone bool, err error) {
	i, ok := find(active, connectorOf(have.subject))
	if !ok {
		return true, nil
	}
	want, err := newDefinition(active[i])
	switch {
	case err != nil:
		return false, err
	case want.subject != have.subject: // its type changed
		return true, nil
	case want.equal(have):
		state[i] = current
	default:
		state[i] = differs
	}
	return false, nil
}
