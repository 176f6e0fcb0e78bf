package service

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// The key-value bucket where NATS remembers the epoch of Redis's data.
const (
	stateBucket = "pollgrid"
	epochKey    = "redis-epoch"
)

// epochCheck is how often a service compares Redis's epoch with the one
// NATS remembers.
const epochCheck = 10 * time.Second

// watchRedisEpoch notices Redis losing its data: NATS remembers the epoch
// (store.Epoch) Redis had, and a different one means Redis restarted empty
// or was replaced. Leases stay safe (fencing tokens come from the clock, so
// a token from before the loss stays fenced), but every connector lost its
// cursor and seen versions: each publishes its current items again as
// created, and JetStream drops those it still remembers (NATS_DUPLICATE_WINDOW).
// The log and pollgrid_redis_data_loss_total say so, once per loss: the
// service that moves the remembered epoch forward reports it.
func (rt *Runtime) watchRedisEpoch(ctx context.Context, losses prometheus.Counter) {
	var kv jetstream.KeyValue
	check := func() {
		if kv == nil {
			var err error
			kv, err = rt.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket: stateBucket, Description: "pollgrid state that must outlive Redis", History: 1,
				Replicas: rt.Env.StreamReplicas,
			})
			if err != nil {
				rt.Logger.Debug("redis epoch: key-value bucket not ready", "error", err)
				return
			}
		}
		epoch, err := rt.Store.Epoch(ctx)
		if err != nil {
			return // Redis is away: the next check will see what it comes back with
		}
		entry, err := kv.Get(ctx, epochKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, _ = kv.Create(ctx, epochKey, []byte(epoch))
		case err != nil:
		case string(entry.Value()) != epoch:
			if _, err := kv.Update(ctx, epochKey, []byte(epoch), entry.Revision()); err == nil {
				losses.Inc()
				rt.Logger.Error("Redis lost its data (or was replaced): cursors, seen versions and metrics start over; "+
					"fencing holds; connectors publish their current items again as created, and JetStream drops those "+
					"it still remembers (NATS_DUPLICATE_WINDOW); keep Redis persistent (AOF) to avoid this",
					"epoch_before", string(entry.Value()), "epoch_now", epoch, "duplicate_window", rt.Env.DuplicateWindow.String())
			}
		}
	}
	check()
	t := time.NewTicker(epochCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}
