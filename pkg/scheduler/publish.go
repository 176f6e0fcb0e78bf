package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/clock"
)

// pageSize is how many definitions one publish window
// holds: large enough that 100,000 connectors take about a hundred round
// trips, small enough to keep the outstanding acks well within nats.go's
// async limits.
const pageSize = 1000

// everySpread is how many seconds "@every" installs are spread over, and
// everySpreadMin how many of them it takes to be worth it: a few schedules
// firing in the same second cost nothing, and a connector changed alone
// must not wait up to everySpread for its new schedule.
const (
	everySpread    = 10
	everySpreadMin = 100
)

// install publishes the schedule definitions of cs and waits for every
// acknowledgement. Publishing one again replaces it (one message per
// subject). A cron definition fires at its phase whenever it is installed;
// an "@every" one fires an interval after it was stored, so many of those
// are installed in groups a second apart over up to everySpread, which keeps
// them from firing in the same second. Definitions are encoded a page at a
// time: their headers are the bulk of a definition's memory.
func (s *Scheduler) install(ctx context.Context, cs []catalog.Defined) error {
	if len(cs) == 0 {
		return nil
	}
	var groups [everySpread][]int32
	every := 0
	for _, c := range cs {
		if strings.HasPrefix(Spec(c.Name, c.Interval), "@every ") {
			every++
		}
	}
	for i, c := range cs {
		g := 0
		if every >= everySpreadMin && strings.HasPrefix(Spec(c.Name, c.Interval), "@every ") {
			g = int(Phase(bus.ScheduleSubject(c.Type, c.Name), min(c.Interval, everySpread*time.Second)) / time.Second)
		}
		groups[g] = append(groups[g], int32(i))
	}
	start := time.Now()
	for g, group := range groups {
		if len(group) == 0 {
			continue
		}
		if err := clock.Sleep(ctx, time.Until(start.Add(time.Duration(g)*time.Second))); err != nil {
			return err
		}
		for page := range slices.Chunk(group, pageSize) {
			msgs := make([]*nats.Msg, len(page))
			for j, i := range page {
				d, err := newDefinition(cs[i])
				if err != nil {
					return err
				}
				msgs[j] = d.msg()
			}
			if err := s.publishAll(ctx, msgs); err != nil {
				return fmt.Errorf("install schedules: %w", err)
			}
			s.metrics.changes.WithLabelValues("install").Add(float64(len(page)))
		}
	}
	return nil
}

// firstTicks sends each overdue connector of cs a tick now, so that a new
// connector (or one whose schedule was lost) is polled at once rather than
// at its first scheduled fire up to an interval later. It works a page at a
// time, last polls and ticks alike.
func (s *Scheduler) firstTicks(ctx context.Context, cs []catalog.Defined) (sent int, err error) {
	warned := false
	for page := range slices.Chunk(cs, pageSize) {
		names := make([]string, len(page))
		for i, c := range page {
			names[i] = c.Name
		}
		lastPolls, err := s.store.LastPolls(ctx, names)
		if err != nil {
			// Without history, a first tick for every new connector is safe:
			// the lease keeps it from overlapping a poll that is running.
			s.metrics.errors.WithLabelValues("redis", "last_polls").Inc()
			if !warned {
				s.log.Warn("reading last polls failed; sending every new connector a first tick", "error", err)
				warned = true
			}
		}
		now := time.Now()
		msgs := make([]*nats.Msg, 0, len(page))
		for _, c := range page {
			if last := lastPolls[c.Name]; !last.IsZero() && now.Sub(last) < c.Interval {
				continue
			}
			tick := tickOf(c)
			tick.DueAt, tick.PublishedAt = timestamppb.New(now), timestamppb.New(now)
			data, err := bus.EncodeTick(tick)
			if err != nil {
				return sent, fmt.Errorf("first tick %s: %w", c.Name, err)
			}
			msgs = append(msgs, &nats.Msg{Subject: bus.TickSubject(c.Type, c.Name), Data: data})
		}
		if err := s.publishAll(ctx, msgs); err != nil {
			return sent, fmt.Errorf("first ticks: %w", err)
		}
		s.metrics.firstTicks.Add(float64(len(msgs)))
		sent += len(msgs)
	}
	return sent, nil
}

// removeConcurrency is how many schedules are removed at once: each removal
// is two purge requests, which one at a time would take minutes for 100,000
// connectors deleted together.
const removeConcurrency = 16

// remove deletes schedules, and the tick each may have pending, so that
// NATS stops firing for a connector removed, disabled or paused.
func (s *Scheduler) remove(ctx context.Context, rs []removal) error {
	if len(rs) == 0 {
		return nil
	}
	stream, err := s.js.Stream(ctx, bus.TicksStream)
	if err != nil {
		return fmt.Errorf("remove schedules: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(removeConcurrency)
	for _, r := range rs {
		g.Go(func() error {
			for _, subject := range []string{r.schedule, r.tick} {
				if err := stream.Purge(gctx, jetstream.WithPurgeSubject(subject)); err != nil {
					return fmt.Errorf("remove schedule %s: purge %s: %w", r.schedule, subject, err)
				}
			}
			s.metrics.changes.WithLabelValues("remove").Inc()
			return nil
		})
	}
	return g.Wait()
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
