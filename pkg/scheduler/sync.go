package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/clock"
	"github.com/pollgrid/pollgrid/pkg/config"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// pageSize is how many definitions one batch read or one publish window
// holds: large enough that 100,000 connectors take about a hundred round
// trips, small enough to keep the outstanding acks well within nats.go's
// async limits.
const pageSize = 1000

// sync brings the installed schedules in line with the config: it installs
// missing or changed definitions, removes those of connectors no longer
// enabled (with any tick still pending for them), and sends a connector
// whose schedule was missing and whose last poll is more than an interval
// ago (or never happened) its first tick now.
func (s *Scheduler) sync(ctx context.Context) error {
	started := time.Now()
	active, err := s.active(ctx)
	if err != nil {
		return err
	}
	// pending starts as every definition the config wants and ends as those
	// to install: reading the installed ones page by page crosses off each
	// that matches, so a resync of 100,000 connectors never holds both sets.
	pending := make(map[string]*wanted, len(active))
	for _, c := range active {
		d, err := newDefinition(c)
		if err != nil {
			return err
		}
		pending[d.subject] = &wanted{def: d, connector: c}
	}
	connectors := len(pending)
	var remove []definition
	err = s.eachInstalled(ctx, func(have definition) {
		w, ok := pending[have.subject]
		switch {
		case !ok:
			remove = append(remove, have)
		case w.def.equal(have):
			delete(pending, have.subject)
		default:
			w.installed = true
		}
	})
	if err != nil {
		return err
	}
	install := make([]definition, 0, len(pending))
	var fresh []config.Connector
	for _, w := range pending {
		install = append(install, w.def)
		if !w.installed {
			fresh = append(fresh, w.connector)
		}
	}
	// First ticks first: a new connector's poll need not wait for the
	// schedules of 100,000 others to be installed.
	if _, err := s.firstTicks(ctx, fresh); err != nil {
		return err
	}
	if err := s.install(ctx, install); err != nil {
		return err
	}
	if err := s.remove(ctx, remove); err != nil {
		return err
	}
	s.metrics.scheduled.Set(float64(connectors))
	if len(install)+len(remove) > 0 {
		s.log.Info("schedules in line with the config", "connectors", connectors, "installed", len(install),
			"new", len(fresh), "removed", len(remove), "took", time.Since(started).Round(time.Millisecond).String())
	}
	return nil
}

// wanted is a definition the config asks for; installed says a different
// one is stored under its subject (so the connector is not new).
type wanted struct {
	def       definition
	connector config.Connector
	installed bool
}

// eachInstalled hands fn every schedule definition stored in TICKS, reading
// them in pages.
func (s *Scheduler) eachInstalled(ctx context.Context, fn func(definition)) error {
	for seq := uint64(1); ; {
		msgs, err := jetstreamext.GetBatch(ctx, s.js, bus.TicksStream, pageSize,
			jetstreamext.GetBatchSeq(seq), jetstreamext.GetBatchSubject(bus.SchedulePrefix+".>"))
		if err != nil {
			return fmt.Errorf("read schedules from %s: %w", bus.TicksStream, err)
		}
		n := 0
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
		}
		if n < pageSize {
			return nil
		}
	}
}

// install publishes definitions and waits for every acknowledgement.
// Publishing one again replaces it (one message per subject). A cron
// definition fires at its phase whenever it is installed; an "@every" one
// fires an interval after it was stored, so those are installed in groups a
// second apart over up to everySpread, which keeps many of them from firing
// in the same second.
func (s *Scheduler) install(ctx context.Context, defs []definition) error {
	groups := make([][]definition, everySpread)
	for _, d := range defs {
		g := 0
		if d.every > 0 {
			g = int(Phase(d.subject, min(d.every, everySpread*time.Second)) / time.Second)
		}
		groups[g] = append(groups[g], d)
	}
	start := time.Now()
	for g, group := range groups {
		if len(group) == 0 {
			continue
		}
		if err := clock.Sleep(ctx, time.Until(start.Add(time.Duration(g)*time.Second))); err != nil {
			return err
		}
		// A page of messages at a time: their headers are the bulk of a
		// definition's memory.
		for page := range slices.Chunk(group, pageSize) {
			msgs := make([]*nats.Msg, len(page))
			for i, d := range page {
				msgs[i] = d.msg()
			}
			if err := s.publishAll(ctx, msgs); err != nil {
				return fmt.Errorf("install schedules: %w", err)
			}
		}
		s.metrics.changes.WithLabelValues("install").Add(float64(len(group)))
	}
	return nil
}

// everySpread is how many seconds "@every" installs are spread over.
const everySpread = 10

// firstTicks sends each overdue connector of cs a tick now, so that a new
// connector (or one whose schedule was lost) is polled at once rather than
// at its first scheduled fire up to an interval later.
func (s *Scheduler) firstTicks(ctx context.Context, cs []config.Connector) (sent int, err error) {
	if len(cs) == 0 {
		return 0, nil
	}
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name
	}
	lastPolls, err := s.store.LastPolls(ctx, names)
	if err != nil {
		// Without history, a first tick for every new connector is safe:
		// the lease keeps it from overlapping a poll that is running.
		s.metrics.errors.WithLabelValues("redis", "last_polls").Inc()
		s.log.Warn("reading last polls failed; sending every new connector a first tick", "error", err)
	}
	now := time.Now()
	var msgs []*nats.Msg
	for _, c := range cs {
		if last := lastPolls[c.Name]; !last.IsZero() && now.Sub(last) < c.Interval {
			continue
		}
		data, err := bus.EncodeTick(&pollgridv1.Tick{
			Connector: c.Name, ConnectorType: c.Type, Interval: durationpb.New(c.Interval),
			DueAt: timestamppb.New(now), PublishedAt: timestamppb.New(now),
		})
		if err != nil {
			return 0, fmt.Errorf("first tick %s: %w", c.Name, err)
		}
		msgs = append(msgs, &nats.Msg{Subject: bus.TickSubject(c.Type, c.Name), Data: data})
	}
	if err := s.publishAll(ctx, msgs); err != nil {
		return 0, fmt.Errorf("first ticks: %w", err)
	}
	s.metrics.firstTicks.Add(float64(len(msgs)))
	return len(msgs), nil
}

// remove deletes definitions, and the tick each may have pending, so that
// NATS stops firing for a connector removed or disabled.
func (s *Scheduler) remove(ctx context.Context, defs []definition) error {
	if len(defs) == 0 {
		return nil
	}
	stream, err := s.js.Stream(ctx, bus.TicksStream)
	if err != nil {
		return fmt.Errorf("remove schedules: %w", err)
	}
	for _, d := range defs {
		for _, subject := range []string{d.subject, d.target} {
			if err := stream.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
				return fmt.Errorf("remove schedule %s: purge %s: %w", d.subject, subject, err)
			}
		}
		s.metrics.changes.WithLabelValues("remove").Inc()
	}
	return nil
}

// publishAll publishes msgs to JetStream, pageSize at a time, each window
// asynchronously, and returns the first failure.
func (s *Scheduler) publishAll(ctx context.Context, msgs []*nats.Msg) error {
	for len(msgs) > 0 {
		window := msgs[:min(pageSize, len(msgs))]
		msgs = msgs[len(window):]
		futures := make([]jetstream.PubAckFuture, 0, len(window))
		for _, m := range window {
			f, err := s.js.PublishMsgAsync(m, jetstream.WithStallWait(5*time.Second))
			if err != nil {
				return fmt.Errorf("publish %s: %w", m.Subject, err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
	}
	return nil
}
