package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pollgrid/pollgrid/pkg/store"
)

// The key-value bucket where NATS remembers how far Redis's data got.
const (
	stateBucket = "pollgrid"
	// progressKey holds the last store.Progress a service saw, as JSON.
	progressKey = "redis-progress"
	// legacyEpochKey is where earlier pollgrid kept the epoch alone. It is
	// read only while progressKey does not exist yet, so that a data loss
	// across an upgrade is still noticed; it is not written any more (older
	// services still running during the upgrade keep it for themselves).
	legacyEpochKey = "redis-epoch"
)

const (
	// epochCheck is how often a service compares Redis's progress with the
	// one NATS remembers. A Redis restored from a snapshot younger than the
	// last check is not noticed (it lost nothing a check recorded).
	epochCheck = 10 * time.Second
	// epochCheckTimeout bounds one check.
	epochCheckTimeout = 5 * time.Second
)

// The operations of a check, the op label of pollgrid_redis_epoch_check_errors_total.
const (
	epochOpRedis    = "redis"
	epochOpKVBucket = "kv_bucket"
	epochOpKVRead   = "kv_read"
	epochOpKVWrite  = "kv_write"
)

// remembered is the value under progressKey.
type remembered struct {
	Epoch   string `json:"epoch"`
	Counter int64  `json:"counter"`
}

// verdict is what one check found.
type verdict string

const (
	verdictUnknown  verdict = "unknown"  // a step failed: nothing learnt (the error is logged and counted)
	verdictFirst    verdict = "first"    // nothing remembered yet; now it is
	verdictProgress verdict = "progress" // the same data, moved forward
	verdictLoss     verdict = "loss"     // another epoch: Redis lost its data (reported)
	verdictRollback verdict = "rollback" // the same epoch, gone back: an older copy of the data (reported)
	verdictSkipped  verdict = "skipped"  // another service moved the record first; it reports what there was to report
)

// progressSource is Redis's side of the check (store.Store).
type progressSource interface {
	Progress(ctx context.Context) (store.Progress, error)
}

// epochWatch notices Redis losing its data or going back in time. Redis
// keeps an epoch (a random id written with the data) and a counter that
// each check moves one step forward (store.Progress); NATS remembers the
// last pair a check saw. A check reads NATS first, then steps Redis, then
// writes the new pair to NATS only if NATS still holds what it read (a
// compare-and-set on the key's revision):
//
//   - another epoch than remembered: Redis restarted empty or was
//     replaced (data loss);
//   - the same epoch and a counter not above the remembered one: every
//     step Redis counts after the remembered value was written is above
//     it, so Redis went back in time (restored from an older snapshot, or
//     a failover to a replica that missed the latest writes);
//   - otherwise plain progress.
//
// Many services check concurrently and each event is reported once: by the
// service whose write moves the record across it. One whose write finds
// the record moved skips its verdict; its next check starts from the new
// record. Leases stay safe either way (fencing tokens come from the clock,
// so a token from before the event stays fenced); what goes back or starts
// over is what the log line says.
type epochWatch struct {
	js              jetstream.JetStream
	replicas        int
	timeout         time.Duration // of one check
	redis           progressSource
	log             *slog.Logger
	duplicateWindow time.Duration

	losses, rollbacks prometheus.Counter
	errors            *prometheus.CounterVec

	kv jetstream.KeyValue
	// failing is the error last logged by operation: each is said once,
	// and again only when it changes.
	failing map[string]string
}

// newEpochWatch registers the watch's metrics (from the start, before
// anything is connected); js and redis are set once connected, before run.
func newEpochWatch(rt *Runtime) *epochWatch {
	w := &epochWatch{
		replicas: rt.Env.StreamReplicas, timeout: epochCheckTimeout, log: rt.Logger,
		duplicateWindow: rt.Env.DuplicateWindow, failing: map[string]string{},
		losses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pollgrid_redis_data_loss_total",
			Help: "Times this service found Redis had lost its data (its epoch changed) and reported it.",
		}),
		rollbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pollgrid_redis_rollback_total",
			Help: "Times this service found Redis had gone back in time (an older copy of its data: a snapshot restored, a lagging replica promoted) and reported it.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollgrid_redis_epoch_check_errors_total",
			Help: "Checks for Redis data loss and rollback that failed, by the step that failed: redis, kv_bucket, kv_read, kv_write (the NATS key-value bucket pollgrid).",
		}, []string{"op"}),
	}
	// Every series exists from the start, so increase() sees the first error.
	for _, op := range []string{epochOpRedis, epochOpKVBucket, epochOpKVRead, epochOpKVWrite} {
		w.errors.WithLabelValues(op)
	}
	rt.Metrics.MustRegister(w.losses, w.rollbacks, w.errors)
	return w
}

// run checks at once and then every epochCheck until ctx ends.
func (w *epochWatch) run(ctx context.Context) {
	w.check(ctx)
	t := time.NewTicker(epochCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.check(ctx)
		}
	}
}

// check runs one comparison and reports what it found.
func (w *epochWatch) check(parent context.Context) verdict {
	ctx, cancel := context.WithTimeout(parent, w.timeout)
	defer cancel()
	fail := func(op string, err error) verdict {
		if parent.Err() != nil {
			return verdictUnknown // the service stops: not a failure of the check
		}
		return w.fail(op, err)
	}
	if w.kv == nil {
		kv, err := w.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: stateBucket, Description: "pollgrid state that must outlive Redis", History: 1, Replicas: w.replicas,
		})
		if err != nil {
			return fail(epochOpKVBucket, err)
		}
		w.kv = kv
	}
	// NATS first: its value was written before this check's step in Redis,
	// so the step must be above it unless Redis went back in time.
	before, revision, err := w.read(ctx)
	if err != nil {
		return fail(epochOpKVRead, err)
	}
	now, err := w.redis.Progress(ctx)
	if err != nil {
		return fail(epochOpRedis, err)
	}
	v := verdictProgress
	switch {
	case before == nil:
		v = verdictFirst
	case before.Epoch != now.Epoch:
		v = verdictLoss
	case now.Counter <= before.Counter:
		v = verdictRollback
	}
	value, err := json.Marshal(remembered{Epoch: now.Epoch, Counter: now.Counter})
	if err != nil {
		return fail(epochOpKVWrite, err)
	}
	if revision == 0 {
		_, err = w.kv.Create(ctx, progressKey, value)
	} else {
		_, err = w.kv.Update(ctx, progressKey, value, revision)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		w.recovered()
		return verdictSkipped
	case err != nil:
		return fail(epochOpKVWrite, err)
	}
	w.recovered()
	switch v {
	case verdictLoss:
		w.losses.Inc()
		w.log.Error("Redis lost its data (or was replaced): cursors, seen versions and metrics start over; "+
			"fencing holds; connectors publish their current items again as created, and JetStream drops those "+
			"it still remembers (NATS_DUPLICATE_WINDOW); keep Redis persistent (AOF) to avoid this",
			"epoch_before", before.Epoch, "epoch_now", now.Epoch, "duplicate_window", w.duplicateWindow.String())
	case verdictRollback:
		w.rollbacks.Inc()
		w.log.Error("Redis went back in time: its data is an older copy (a snapshot restored, or a failover to a replica "+
			"that missed the latest writes); cursors, seen versions, poll counts and history are as they were then; "+
			"fencing holds; connectors publish again the changes since then, and JetStream drops those it still "+
			"remembers (NATS_DUPLICATE_WINDOW); restore only Redis's latest data, and keep it persistent (AOF)",
			"epoch", now.Epoch, "progress_before", before.Counter, "progress_now", now.Counter,
			"duplicate_window", w.duplicateWindow.String())
	}
	return v
}

// read reads what NATS remembers and the revision to update it at
// (0: nothing under progressKey yet, to create).
func (w *epochWatch) read(ctx context.Context) (*remembered, uint64, error) {
	entry, err := w.kv.Get(ctx, progressKey)
	if err == nil {
		var r remembered
		if err := json.Unmarshal(entry.Value(), &r); err != nil || r.Epoch == "" {
			// Not a value pollgrid wrote: it is replaced, with no verdict.
			w.log.Warn("the Redis progress NATS remembers is not pollgrid's; replacing it",
				"bucket", stateBucket, "key", progressKey, "value", truncate(string(entry.Value()), 64))
			return nil, entry.Revision(), nil
		}
		return &r, entry.Revision(), nil
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, err
	}
	legacy, err := w.kv.Get(ctx, legacyEpochKey)
	switch {
	case err == nil:
		return &remembered{Epoch: string(legacy.Value())}, 0, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, 0, nil
	default:
		return nil, 0, err
	}
}

// fail counts a failed step and logs it, once per step until it changes,
// with what to do about it.
func (w *epochWatch) fail(op string, err error) verdict {
	w.errors.WithLabelValues(op).Inc()
	if w.failing[op] == err.Error() {
		return verdictUnknown
	}
	w.failing[op] = err.Error()
	w.log.Warn("cannot check whether Redis lost its data or went back in time: "+epochFix(op), "op", op, "error", err)
	return verdictUnknown
}

// recovered says once that checks work again after failing.
func (w *epochWatch) recovered() {
	if len(w.failing) == 0 {
		return
	}
	clear(w.failing)
	w.log.Info("checking whether Redis lost its data or went back in time works again")
}

// epochFix says what to do when op fails.
func epochFix(op string) string {
	kv := fmt.Sprintf("the NATS key-value bucket %q (stream KV_%s)", stateBucket, stateBucket)
	switch op {
	case epochOpRedis:
		return "Redis did not answer (/readyz says why)"
	case epochOpKVBucket:
		return "could not create or open " + kv + ": our NATS user needs $JS.API.> (deploy/nats/pollgrid.conf), and the account JetStream storage for it"
	case epochOpKVRead:
		return "could not read " + kv + ": our NATS user needs $JS.API.> (deploy/nats/pollgrid.conf)"
	default:
		return "could not write to " + kv + ": our NATS user needs to publish to $KV." + stateBucket + ".> (deploy/nats/pollgrid.conf); " +
			"a refused publish shows in the NATS server's log as a permissions violation"
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
