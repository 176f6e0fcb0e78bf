// Package aggregatord is the aggregator service's wiring: its options from
// the environment, the aggregator it builds on the shared runtime
// (pkg/service), its admin verbs and its HTTP endpoints (the status page and
// the per-connector metrics). services/aggregator runs it as a binary; the
// dev stack and the tests run it in process.
package aggregatord

import (
	"context"
	"time"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/aggregator"
	"github.com/pollgrid/pollgrid/pkg/budget"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/service"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
)

// Service is the aggregator: it turns poll reports into per-connector
// metrics, history and status. Its default port is the one
// docker-compose.yml and the Prometheus scrape config use.
var Service = service.Service{Name: "aggregator", DefaultHTTP: ":8080", Connectors: builtin.Registry(), Run: run, FollowsCatalog: true}

// options are the aggregator's own environment variables (the shared ones
// are service.Env).
type options struct {
	// healthyWindow is AGGREGATOR_HEALTHY_WINDOW: how far back a success
	// keeps a connector healthy; default 5m.
	healthyWindow time.Duration
	// gauges is AGGREGATOR_CONNECTOR_GAUGES_MAX, the most connectors with
	// their own Prometheus gauges; 0 turns them off.
	gauges int
	// flush is AGGREGATOR_FLUSH: how long reports wait before one write to
	// Redis.
	flush time.Duration
	// staleAfter is AGGREGATOR_STALE_AFTER: missed intervals that make a
	// connector stale.
	staleAfter int
}

func readOptions(lookup config.Env) (options, error) {
	var o options
	var err error
	if o.healthyWindow, err = service.Duration(lookup, "AGGREGATOR_HEALTHY_WINDOW", 0); err != nil {
		return o, err
	}
	if o.gauges, err = service.Int(lookup, "AGGREGATOR_CONNECTOR_GAUGES_MAX", aggregator.DefaultConnectorGauges, 0, 1_000_000); err != nil {
		return o, err
	}
	if o.flush, err = service.Duration(lookup, "AGGREGATOR_FLUSH", aggregator.DefaultFlushInterval); err != nil {
		return o, err
	}
	o.staleAfter, err = service.Int(lookup, "AGGREGATOR_STALE_AFTER", aggregator.DefaultStaleAfter, 1, 1000)
	return o, err
}

func run(ctx context.Context, rt *service.Runtime) error {
	o, err := readOptions(rt.Lookup)
	if err != nil {
		return err
	}
	budgets, err := budget.New(rt.Redis, rt.Store.Keys(), nil) // reads only: no metrics
	if err != nil {
		return err
	}
	// The status views list the connectors the catalog defines, followed
	// as they change (the runtime's index).
	index := rt.Index
	a := aggregator.New(rt.JS, rt.Store, history.New(rt.Redis, rt.Store.Keys()), aggregator.Options{
		Budgets:       budgets,
		HealthyWindow: o.healthyWindow, ConnectorGaugesMax: o.gauges, FlushInterval: o.flush,
		Connectors: index, StaleAfter: o.staleAfter, Redactor: rt.Redactor,
		Logger: rt.Logger, Registerer: rt.Metrics, Tracer: rt.Tracer, Propagator: telemetry.Propagator,
	})
	return rt.Run(ctx, service.Parts{
		Loop:    a.Run,
		Handler: a.Handler(),
		Verbs:   map[string]admin.Handler{admin.VerbList: a.List, admin.VerbStatus: a.Status},
	})
}
