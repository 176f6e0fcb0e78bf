package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pollgrid/pollgrid/pkg/store"
)

// maxAttempts is how many polls of a connector may begin in a row without
// one committing (each one's worker died) before a worker stops polling it
// and backs off: one connector that crashes its workers must not take
// every worker down in turn.
const maxAttempts = 5

// heartbeat keeps a running poll's lease and tick alive: it renews the lease
// and tells JetStream the tick is in progress, both four times per the
// shorter of the lease TTL and AckWait, so one late heartbeat loses
// neither. Nothing runs for a poll shorter than one beat (most of them). A
// failed renewal cancels the poll: another worker may own the connector.
type heartbeat struct {
	w      *Worker
	lease  *store.Lease
	period time.Duration

	mu      sync.Mutex
	stopped bool
	renewed time.Time // the last time the lease was known to be ours
	running sync.WaitGroup
	timer   *time.Timer
}

// startHeartbeat keeps lease, and the tick when there is one (nil: a
// triggered poll), alive until stop.
func (w *Worker) startHeartbeat(ctx context.Context, cancel context.CancelCauseFunc, lease *store.Lease, tickProgress progress) *heartbeat {
	hb := &heartbeat{w: w, lease: lease, period: min(lease.TTL, w.opts.AckWait) / 4, renewed: time.Now()}
	hb.timer = time.AfterFunc(hb.period, func() {
		hb.mu.Lock()
		if hb.stopped {
			hb.mu.Unlock()
			return
		}
		hb.running.Add(1)
		hb.mu.Unlock()
		defer hb.running.Done()
		if tickProgress != nil {
			if err := tickProgress.InProgress(); err != nil {
				w.metrics.errors.WithLabelValues("nats", "in_progress").Inc()
			}
		}
		if err := hb.renew(ctx); err != nil {
			if ctx.Err() == nil {
				w.metrics.errors.WithLabelValues("redis", "renew").Inc()
				w.log.ErrorContext(ctx, "lease renewal failed: cancelling the poll", "error", err)
				cancel(fmt.Errorf("lease lost: %w", err))
			}
			return
		}
		hb.mu.Lock()
		if !hb.stopped {
			hb.timer.Reset(hb.period)
		}
		hb.mu.Unlock()
	})
	return hb
}

func (hb *heartbeat) renew(ctx context.Context) error {
	at := time.Now()
	if err := hb.w.leases.Renew(ctx, hb.lease); err != nil {
		return err
	}
	hb.mu.Lock()
	hb.renewed = at
	hb.mu.Unlock()
	return nil
}

// guard is the poll's publish guard (poll.Guard): it lets the signals go
// only while the lease is surely ours. Within half its TTL of the last
// acquire or renewal (Go's monotonic clock, which counts a frozen process's
// sleep) that is known without asking; later, it renews first. A worker
// that was frozen past its lease wakes up to a refused renewal and
// publishes nothing.
func (hb *heartbeat) guard(ctx context.Context) error {
	hb.mu.Lock()
	fresh := time.Since(hb.renewed) < hb.lease.TTL/2
	hb.mu.Unlock()
	if fresh {
		return nil
	}
	return hb.renew(ctx)
}

// stop ends the heartbeats and returns once none runs.
func (hb *heartbeat) stop() {
	hb.mu.Lock()
	hb.stopped = true
	hb.timer.Stop()
	hb.mu.Unlock()
	hb.running.Wait()
}
