package worker

import (
	"context"
	"errors"

	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/clock"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
)

// The worker serves two admin verbs: trigger (poll now, once, under the
// lease, and say how it went) and reset (forget cursor and seen versions
// under the lease). Any worker may answer: each reads the connector's
// latest definition from the catalog, whatever its WORKER_TYPES.

// Trigger is the trigger verb: it polls the named connector at once, on
// this worker, under the connector's lease (waiting for a poll that holds
// it to end), and replies with the poll's outcome. The poll is reported to
// the aggregator like any other.
func (w *Worker) Trigger(ctx context.Context, data []byte) (any, error) {
	var req admin.NameRequest
	if err := admin.Decode(data, &req); err != nil {
		return nil, err
	}
	in, err := w.adminLookup(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	if in.err == nil && in.cfg.Budget.Name != "" {
		// No tick says how many share the budget: the poll draws as
		// if alone on it, once.
		if in, err = w.withBudget(ctx, in, 1); err != nil {
			return nil, admin.Errorf(admin.CodeUnavailable, "trigger %s: %v", req.Name, err)
		}
	}
	c := in.cfg
	ctx, span := w.tracer.Start(ctx, "trigger "+c.Name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("pollgrid.connector", c.Name), attribute.String("pollgrid.connector_type", c.Type)))
	defer span.End()
	ctx = telemetry.ContextWithLogAttrs(ctx, slog.String("connector", c.Name), slog.String("type", c.Type))
	w.metrics.inFlight.Inc()
	defer w.metrics.inFlight.Dec()
	asked := time.Now()
	for {
		// A trigger polls even while the connector is paused or waits, and
		// has no tick to keep in progress.
		report, res := w.poll(ctx, in, store.ClaimTrigger, nil, 0)
		var held *store.LeaseHeldError
		if errors.As(res.err, &held) {
			if err := waitLease(ctx, held); err != nil {
				return nil, err
			}
			continue
		}
		bus.InjectReportTrace(ctx, w.opts.Propagator, report)
		w.reports.add(report)
		w.log.InfoContext(ctx, "triggered poll done", "outcome", bus.OutcomeName(report.GetOutcome()))
		started := report.GetStartedAt().AsTime()
		return admin.TriggerReply{
			Connector:     c.Name,
			Worker:        w.opts.ID,
			Poll:          admin.PollOf(report),
			FinishedAt:    started.Add(report.GetDuration().AsDuration()),
			ItemsFailed:   report.GetItemsFailed(),
			FencingToken:  report.GetFencingToken(),
			WaitedSeconds: started.Sub(asked).Seconds(),
		}, nil
	}
}

// Reset is the reset verb: it forgets the named connector's cursor,
// validators and seen versions under its lease, so that its next poll
// publishes every current item as created. The request must repeat the
// name in confirm.
func (w *Worker) Reset(ctx context.Context, data []byte) (any, error) {
	var req admin.ResetRequest
	if err := admin.Decode(data, &req); err != nil {
		return nil, err
	}
	if req.Confirm != req.Name || req.Name == "" {
		return nil, admin.Errorf(admin.CodeBadRequest, "reset forgets the cursor and seen versions of %q, and its next poll publishes "+
			"every current item again as created: confirm by repeating the name in \"confirm\" (pollctl reset %s --yes)", req.Name, req.Name)
	}
	in, err := w.adminLookup(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	ttl := in.cfg.LeaseTTL
	if in.err != nil {
		// A definition this worker cannot poll can still be reset.
		ttl = resetLeaseTTL
	}
	asked := time.Now()
	for {
		res, err := w.store.Reset(ctx, in.cfg.Name, "admin-reset@"+w.opts.ID, ttl)
		var held *store.LeaseHeldError
		if errors.As(err, &held) {
			if err := waitLease(ctx, held); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, admin.Errorf(admin.CodeUnavailable, "reset %s: %v", in.cfg.Name, err)
		}
		w.log.Warn("connector reset: its next poll publishes every current item as created",
			"connector", in.cfg.Name, "generation", res.Generation, "items_forgotten", res.Forgotten, "token", res.Token)
		return admin.ResetReply{
			Connector: in.cfg.Name, Generation: res.Generation, ItemsForgotten: res.Forgotten,
			FencingToken: res.Token, WaitedSeconds: time.Since(asked).Seconds(),
		}, nil
	}
}

// resetLeaseTTL is the lease a reset holds when the connector's own
// lease_ttl is unknown: its definition cannot be polled here.
const resetLeaseTTL = 2 * time.Second

// adminLookup reads the latest definition of the connector an admin verb
// names: a verb has no tick to say which revision it wants.
func (w *Worker) adminLookup(ctx context.Context, name string) (*instance, error) {
	in, err := w.defs.connector(ctx, name, 0, true)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil, admin.Errorf(admin.CodeNotFound, "no connector named %q in the catalog (pollctl list shows them; "+
			"pollctl apply adds one)", name)
	}
	if err != nil {
		return nil, admin.Errorf(admin.CodeUnavailable, "read the definition of %s: %v", name, err)
	}
	return in, nil
}

// waitLease waits until a held lease should be free again, or says why it
// cannot: the request's time is up.
func waitLease(ctx context.Context, held *store.LeaseHeldError) error {
	if clock.Sleep(ctx, held.Remaining+50*time.Millisecond) != nil {
		return admin.Errorf(admin.CodeConflict, "%s: a poll held the lease the whole time the request had; "+
			"try again, or see who holds it with pollctl status %s", held.Error(), held.Connector)
	}
	return nil
}
