// Package schedulerd is the scheduler service's wiring: its options from the
// environment, the scheduler it builds on the shared runtime (pkg/service)
// with its leader lease, and its admin verbs. services/scheduler runs it as
// a binary; the dev stack and the tests run it in process.
package schedulerd

import (
	"context"
	"time"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
	"github.com/pollgrid/pollgrid/pkg/leader"
	"github.com/pollgrid/pollgrid/pkg/scheduler"
	"github.com/pollgrid/pollgrid/pkg/service"
)

// Service is the scheduler: the leader among its replicas installs each
// enabled connector's schedule in NATS, which fires the ticks, following
// the connector catalog. Its default
// port is the one docker-compose.yml and the Prometheus scrape config use.
var Service = service.Service{Name: "scheduler", DefaultHTTP: ":8081", Connectors: builtin.Registry(), Run: run, FollowsCatalog: true}

// options are the scheduler's own environment variables (the shared ones
// are service.Env).
type options struct {
	// id is SCHEDULER_ID, this replica's name in the leader lease; default
	// host name and pid.
	id string
	// leaderTTL is SCHEDULER_LEADER_TTL; default 10s.
	leaderTTL time.Duration
	// resync is SCHEDULER_RESYNC, how often the leader compares every
	// installed schedule with the connector catalog; default 5m.
	resync time.Duration
}

func readOptions(lookup config.Env) (options, error) {
	var o options
	var err error
	if o.leaderTTL, err = service.Duration(lookup, "SCHEDULER_LEADER_TTL", 0); err != nil {
		return o, err
	}
	if o.resync, err = service.Duration(lookup, "SCHEDULER_RESYNC", 0); err != nil {
		return o, err
	}
	o.id, _ = lookup("SCHEDULER_ID")
	return o, nil
}

func run(ctx context.Context, rt *service.Runtime) error {
	o, err := readOptions(rt.Lookup)
	if err != nil {
		return err
	}
	// The runtime's index follows the connector catalog; the scheduler
	// keeps the schedules in line with it.
	index := rt.Index
	s := scheduler.New(rt.JS, rt.Store, leader.New(rt.Redis, rt.Store.Keys()), index, scheduler.Options{
		ID: o.id, LeaderTTL: o.leaderTTL, Resync: o.resync, Logger: rt.Logger, Registerer: rt.Metrics,
	})
	// pollctl resync asks the leader to compare at once.
	resyncSub, err := s.WatchResync(rt.NATS)
	if err != nil {
		return err
	}
	defer func() { _ = resyncSub.Unsubscribe() }()
	// Workers ask for an adaptive connector's effective interval.
	adaptSub, err := s.WatchAdapt(rt.NATS)
	if err != nil {
		return err
	}
	defer func() { _ = adaptSub.Unsubscribe() }()
	// The scheduler serves the catalog's verbs (pollctl apply, get,
	// history, rollback, delete) from the index it keeps anyway.
	verbs := catalog.Verbs(rt.Catalog, index, rt.Connectors)
	verbs[admin.VerbPause], verbs[admin.VerbResume] = s.Pause, s.Resume
	return rt.Run(ctx, service.Parts{
		Loop:    s.Run,
		Replica: o.id,
		Verbs:   verbs,
	})
}
