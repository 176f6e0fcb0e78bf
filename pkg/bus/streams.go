package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	TicksStream   = "TICKS"
	SignalsStream = "SIGNALS"
	ReportsStream = "REPORTS"
)

// StreamOptions tune the streams. Zero values take the defaults.
type StreamOptions struct {
	// Replicas for every stream: 1 for a single server, 3 in production.
	Replicas int
	// SignalsMaxAge bounds how long signals are kept; default 72h.
	SignalsMaxAge time.Duration
	// DuplicateWindow is how long JetStream remembers Nats-Msg-Id to drop a
	// re-published signal; default 10m. It must cover a worker's crash and
	// the tick's redelivery.
	DuplicateWindow time.Duration
	// ReportsMaxAge bounds unconsumed poll reports; default 24h.
	ReportsMaxAge time.Duration
	// Memory keeps streams in memory (tests); default file storage.
	Memory bool
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.SignalsMaxAge <= 0 {
		o.SignalsMaxAge = 72 * time.Hour
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = 10 * time.Minute
	}
	if o.ReportsMaxAge <= 0 {
		o.ReportsMaxAge = 24 * time.Hour
	}
	return o
}

// StreamConfigs returns the three streams as pollgrid needs them.
func StreamConfigs(o StreamOptions) []jetstream.StreamConfig {
	o = o.withDefaults()
	storage := jetstream.FileStorage
	if o.Memory {
		storage = jetstream.MemoryStorage
	}
	return []jetstream.StreamConfig{
		{
			Name:        TicksStream,
			Description: "poll ticks, fired by NATS from one message schedule per connector; at most one pending per connector",
			// Ticks on pollgrid.tick.<type>.<name>; each connector's schedule
			// definition on pollgrid.schedule.<type>.<name>. No consumer may
			// cover the definitions: on a work queue, consuming one deletes it.
			Subjects:  []string{TickPrefix + ".>", SchedulePrefix + ".>"},
			Retention: jetstream.WorkQueuePolicy,
			// One message per subject: one definition per connector (a new
			// one replaces the old), and one pending tick per connector (a
			// fire replaces a tick still pending or running; the lease keeps
			// the polls apart). Schedules refuse discard-new.
			MaxMsgsPerSubject: 1,
			Discard:           jetstream.DiscardOld,
			AllowMsgSchedules: true,
			AllowRollup:       true,
			// The scheduler reads the definitions back in batches.
			AllowDirect: true,
			Storage:     storage,
			Replicas:    o.Replicas,
		},
		{
			Name:        SignalsStream,
			Description: "change events, CloudEvents 1.0 binary mode",
			Subjects:    []string{SignalPrefix + ".>"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      o.SignalsMaxAge,
			Duplicates:  o.DuplicateWindow,
			Storage:     storage,
			Replicas:    o.Replicas,
		},
		{
			Name:        ReportsStream,
			Description: "poll reports for the aggregator",
			Subjects:    []string{ReportPrefix + ".>"},
			Retention:   jetstream.WorkQueuePolicy,
			MaxAge:      o.ReportsMaxAge,
			Storage:     storage,
			Replicas:    o.Replicas,
		},
	}
}

// EnsureStreams creates or updates the streams. Every service calls it at
// start, so whichever starts first creates them; it is idempotent.
// A stream that already has the wanted settings is left alone: updating it
// needlessly on every service start races with consumer creation inside
// nats-server (seen with -race on 2.15.2).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	for _, cfg := range StreamConfigs(o) {
		st, err := js.Stream(ctx, cfg.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			_, err = js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				err = nil // another service created it first
			}
		case err == nil && !sameSettings(st.CachedInfo().Config, cfg):
			_, err = js.UpdateStream(ctx, cfg)
		}
		if err != nil {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

func sameSettings(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention &&
		unlimited(have.MaxMsgsPerSubject) == unlimited(want.MaxMsgsPerSubject) && have.Discard == want.Discard &&
		have.DiscardNewPerSubject == want.DiscardNewPerSubject && have.MaxAge == want.MaxAge &&
		have.AllowMsgSchedules == want.AllowMsgSchedules && have.AllowDirect == want.AllowDirect &&
		(want.Duplicates == 0 || have.Duplicates == want.Duplicates) && have.Replicas == want.Replicas && have.Storage == want.Storage
}

// unlimited maps the ways of saying "no limit" (0 asked, -1 stored) to one.
func unlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}
