package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
)

// The scheduler serves pause and resume: it owns the message schedules a
// pause removes. Any replica may answer. The pause itself lives in Redis
// (store.Pause), where every replica's sync reads it, so it survives a
// failover, restarts and reloads; the replica that answers also removes or
// reinstalls the schedule at once, then asks every replica to resync, so a
// leader whose sync read the pauses just before this one cannot leave a
// schedule behind.

// active filters cs in place down to the enabled connectors that are not
// paused: those that get a message schedule.
func (s *Scheduler) active(ctx context.Context, cs []catalog.Defined) ([]catalog.Defined, error) {
	enabled := cs[:0]
	for _, c := range cs {
		if c.Enabled {
			enabled = append(enabled, c)
		}
	}
	names := make([]string, len(enabled))
	for i, c := range enabled {
		names[i] = c.Name
	}
	paused, err := s.store.Paused(ctx, names)
	if err != nil {
		s.metrics.errors.WithLabelValues("redis", "paused").Inc()
		return nil, err
	}
	if len(paused) == 0 {
		return enabled, nil
	}
	active := enabled[:0]
	for _, c := range enabled {
		if _, ok := paused[c.Name]; !ok {
			active = append(active, c)
		}
	}
	return active, nil
}

// WatchResync makes this replica sync at once when any replica asks (see
// bus.ResyncSubject); a replica that does not lead ignores it.
func (s *Scheduler) WatchResync(nc *nats.Conn) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(bus.ResyncSubject, func(*nats.Msg) {
		select {
		case s.resync <- struct{}{}:
		default: // one is pending already
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", bus.ResyncSubject, err)
	}
	return sub, nil
}

func (s *Scheduler) askResync() {
	if err := s.js.Conn().Publish(bus.ResyncSubject, nil); err != nil {
		s.log.Warn("asking the leader to resync failed; its next periodic sync catches up", "error", err)
	}
}

func (s *Scheduler) connector(name string) (catalog.Defined, error) {
	c, ok := s.index.Connector(name)
	if ok {
		return c, nil
	}
	if why, ok := s.index.Invalid()[name]; ok {
		return c, admin.Errorf(admin.CodeNotFound, "connector %q is not scheduled: its definition does not pass its check: %s", name, why)
	}
	return c, admin.Errorf(admin.CodeNotFound, "no connector named %q in the catalog (pollctl list shows them; pollctl apply adds one)", name)
}

// Pause is the pause verb: the connector's ticks stop (its schedule and any
// pending tick are removed) until resume, and a worker that still gets one
// skips it. A poll running now finishes.
func (s *Scheduler) Pause(ctx context.Context, data []byte) (any, error) {
	var req admin.PauseRequest
	if err := admin.Decode(data, &req); err != nil {
		return nil, err
	}
	c, err := s.connector(req.Name)
	if err != nil {
		return nil, err
	}
	since, already, err := s.store.Pause(ctx, c.Name, req.By, time.Now())
	if err != nil {
		return nil, admin.Errorf(admin.CodeUnavailable, "pause %s: %v (nothing changed; check Redis and try again)", c.Name, err)
	}
	defer s.askResync()
	r := removal{schedule: bus.ScheduleSubject(c.Type, c.Name), tick: bus.TickSubject(c.Type, c.Name)}
	if err := s.remove(ctx, []removal{r}); err != nil {
		return nil, admin.Errorf(admin.CodeUnavailable, "%s is paused (workers skip its ticks), but removing its schedule failed: %v; "+
			"the leader's next sync removes it", c.Name, err)
	}
	st, err := s.store.State(ctx, c.Name)
	if err != nil {
		return nil, admin.Errorf(admin.CodeUnavailable, "%s is paused, but reading it back failed: %v", c.Name, err)
	}
	if !already {
		s.log.Info("connector paused", "connector", c.Name, "by", req.By)
	}
	return admin.PauseReply{Connector: c.Name, Paused: true, Since: since, By: st.PausedBy, Already: already}, nil
}

// Resume is the resume verb: the connector's schedule is installed again
// (unless its definition disables it) and, when it is overdue, it gets a tick
// at once.
func (s *Scheduler) Resume(ctx context.Context, data []byte) (any, error) {
	var req admin.NameRequest
	if err := admin.Decode(data, &req); err != nil {
		return nil, err
	}
	c, err := s.connector(req.Name)
	if err != nil {
		return nil, err
	}
	pausedAt, was, err := s.store.Resume(ctx, c.Name, time.Now())
	if err != nil {
		return nil, admin.Errorf(admin.CodeUnavailable, "resume %s: %v (it is still paused; check Redis and try again)", c.Name, err)
	}
	defer s.askResync()
	reply := admin.ResumeReply{Connector: c.Name, WasPaused: was}
	if was {
		reply.PausedAt = &pausedAt
		s.log.Info("connector resumed", "connector", c.Name, "paused_for", time.Since(pausedAt).Round(time.Second).String())
	}
	if !c.Enabled {
		return reply, nil
	}
	d, err := newDefinition(c)
	if err != nil {
		return nil, admin.Errorf(admin.CodeInternal, "resume %s: %v", c.Name, err)
	}
	if err := s.publishAll(ctx, []*nats.Msg{d.msg()}); err != nil {
		return nil, admin.Errorf(admin.CodeUnavailable, "%s is resumed, but installing its schedule failed: %v; "+
			"the leader's next sync installs it", c.Name, err)
	}
	s.metrics.changes.WithLabelValues("install").Inc()
	reply.Scheduled = true
	sent, err := s.firstTicks(ctx, []catalog.Defined{c})
	if err != nil {
		return nil, admin.Errorf(admin.CodeUnavailable, "%s is resumed and scheduled, but its first tick failed: %v", c.Name, err)
	}
	reply.FirstTick = sent > 0
	return reply, nil
}
