package cli

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/pollgrid/pollgrid/pkg/bus"
)

// tailFlags are tail's options: how many signals, and which stored ones.
type tailFlags struct {
	count int
	last  int
	since string
}

func (a *app) tailCmd() *cobra.Command {
	var f tailFlags
	cmd := &cobra.Command{
		Use:   "tail [SUBJECT]",
		Short: "Print signals as they are published, or the last ones stored",
		Long: `tail subscribes to SUBJECT (default signals.>) and prints each signal on one
line: when it was observed, created or updated, the connector, the item id and
version, and the start of its data. --json prints each signal's body, one JSON
document a line. It says on standard error when it is subscribed, and runs until
interrupted, or until --count signals.

--last N first prints the last N signals stored in the SIGNALS stream, and
--since those stored since a time (a duration back from now, 1h, or a time,
2026-12-07T08:00:00Z); then the new ones as they are stored. These read
JetStream: the NATS user needs the operator role's $JS.API subjects on SIGNALS
(deploy/nats/pollgrid.conf).`,
		Example: `  pollctl tail
  pollctl tail 'signals.github-releases.>'
  pollctl tail --last 20 'signals.weather-noaa.noaa-alerts-ca'
  pollctl tail --since 1h --count 100
  pollctl tail --json | jq .data.tag_name`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			subject := bus.SignalPrefix + ".>"
			if len(args) == 1 {
				subject = args[0]
			}
			since, err := f.sinceTime(time.Now())
			if err != nil {
				return err
			}
			if _, err := a.client(); err != nil {
				return err
			}
			if f.last > 0 || !since.IsZero() {
				return a.tailStored(cmd.Context(), subject, f, since)
			}
			return a.tailLive(cmd.Context(), subject, f.count)
		},
	}
	cmd.Flags().IntVar(&f.count, "count", 0, "stop after this many signals (0: run until interrupted)")
	cmd.Flags().IntVar(&f.last, "last", 0, "first print the last N signals stored in the SIGNALS stream")
	cmd.Flags().StringVar(&f.since, "since", "", "first print the signals stored since this time: a duration back from now (1h) or an RFC 3339 time")
	return cmd
}

// sinceTime reads --since, checking it against --last.
func (f tailFlags) sinceTime(now time.Time) (time.Time, error) {
	switch {
	case f.last < 0:
		return time.Time{}, fail(ExitUsage, "--last %d: give a number of signals above 0", f.last)
	case f.count < 0:
		return time.Time{}, fail(ExitUsage, "--count %d: give a number of signals above 0, or 0 to run until interrupted", f.count)
	case f.since == "":
		return time.Time{}, nil
	case f.last > 0:
		return time.Time{}, fail(ExitUsage, "--last and --since both say where to start: give one")
	}
	if d, err := time.ParseDuration(f.since); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, f.since); err == nil {
		return t, nil
	}
	return time.Time{}, fail(ExitUsage, "--since %q is neither a duration back from now (1h, 30m) nor an RFC 3339 time (2026-12-07T08:00:00Z)", f.since)
}

// tailLive prints the signals published from now on: a plain subscription,
// which needs no JetStream permission.
func (a *app) tailLive(ctx context.Context, subject string, count int) error {
	msgs := make(chan *nats.Msg, 1024)
	sub, err := a.nc.ChanSubscribe(subject, msgs)
	if err != nil {
		return fail(ExitUsage, "subscribe %s: %v", subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := a.nc.Flush(); err != nil {
		return fail(ExitUnavailable, "subscribe %s: %v", subject, err)
	}
	if err := a.nc.LastError(); err != nil {
		return fail(ExitUnavailable, "subscribe %s: %v", subject, err)
	}
	fmt.Fprintf(a.io.Err, "pollctl: subscribed to %s on %s; waiting for signals (Ctrl-C to stop)\n", subject, a.nc.ConnectedUrlRedacted())
	for n := 0; count == 0 || n < count; n++ {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			a.printSignal(m.Subject, m.Data)
		}
	}
	return nil
}

// tailStored prints signals stored in the SIGNALS stream, the last f.last
// or those since since, then the new ones as they are stored, through an
// ordered consumer of its own (deleted when tail ends, or by the server
// after a minute without tail).
func (a *app) tailStored(ctx context.Context, subject string, f tailFlags, since time.Time) error {
	js, err := jetstream.New(a.nc)
	if err != nil {
		return fail(ExitUnavailable, "JetStream: %v", err)
	}
	stream, err := js.Stream(ctx, bus.SignalsStream)
	if err != nil {
		return jetStreamError(err)
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, NamePrefix: consumerName("pollctl_tail"), InactiveThreshold: time.Minute,
	}
	skip := 0
	which := "since " + clock(since)
	if f.last > 0 {
		var start uint64
		if start, skip, err = lastStart(ctx, stream, subject, f.last); err != nil {
			return jetStreamError(err)
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
		which = fmt.Sprintf("(the last %d asked for)", f.last)
	} else {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return jetStreamError(err)
	}
	stored := 0
	if info := cons.CachedInfo(); info != nil {
		stored = max(0, int(info.NumPending)-skip)
	}
	iter, err := cons.Messages()
	if err != nil {
		return jetStreamError(err)
	}
	defer iter.Stop()
	fmt.Fprintf(a.io.Err, "pollctl: reading %s on %s: %s on %s %s, then new ones as they are stored (Ctrl-C to stop)\n",
		bus.SignalsStream, a.nc.ConnectedUrlRedacted(), plural(stored, "stored signal"), subject, which)
	printed := 0
	for f.count == 0 || printed < f.count {
		if printed == stored && stored > 0 {
			fmt.Fprintf(a.io.Err, "pollctl: %s above; waiting for new ones\n", plural(stored, "stored signal"))
		}
		m, err := iter.Next(jetstream.NextContext(ctx))
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return jetStreamError(err)
		}
		if skip > 0 {
			skip--
			continue
		}
		a.printSignal(m.Subject(), m.Data())
		printed++
	}
	return nil
}

// lastStart finds where the last n signals on subject start: the stream
// sequence to read from, and how many signals there to skip first. It counts
// what a window at the stream's end holds (a consumer's pending count, which
// the server computes without sending a message), widening the window until
// it holds n or the whole stream.
func lastStart(ctx context.Context, stream jetstream.Stream, subject string, n int) (start uint64, skip int, err error) {
	state := stream.CachedInfo().State
	if state.Msgs == 0 {
		return state.LastSeq + 1, 0, nil
	}
	for window := uint64(n); ; window *= 4 {
		start = state.FirstSeq
		if state.LastSeq-state.FirstSeq+1 > window {
			start = state.LastSeq - window + 1
		}
		held, err := countFrom(ctx, stream, subject, start)
		if err != nil {
			return 0, 0, err
		}
		if held >= n || start == state.FirstSeq {
			return start, max(0, held-n), nil
		}
	}
}

// countFrom counts the signals on subject from sequence start on, with a
// consumer made for it and deleted at once.
func countFrom(ctx context.Context, stream jetstream.Stream, subject string, start uint64) (int, error) {
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Name: consumerName("pollctl_count"), FilterSubject: subject,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, InactiveThreshold: time.Minute,
	})
	if err != nil {
		return 0, err
	}
	defer func() { _ = stream.DeleteConsumer(context.WithoutCancel(ctx), cons.CachedInfo().Name) }()
	return int(cons.CachedInfo().NumPending), nil
}

// consumerName is a name of its own for a consumer tail makes.
func consumerName(prefix string) string {
	return prefix + "_" + strconv.FormatUint(rand.Uint64(), 36)
}

// jetStreamError words a failure to read SIGNALS: most often a NATS user
// without the JetStream subjects tail needs.
func jetStreamError(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fail(ExitUnavailable, "no %s stream on this NATS: is it pollgrid's, and has a service started on it?", bus.SignalsStream)
	case errors.Is(err, nats.ErrPermissionViolation), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return fail(ExitUnavailable, "read the %s stream: %v (--last and --since read JetStream: this NATS user needs the operator role's $JS.API subjects on %s, see deploy/nats/pollgrid.conf)",
			bus.SignalsStream, err, bus.SignalsStream)
	}
	return fail(ExitUnavailable, "read the %s stream: %v", bus.SignalsStream, err)
}

func (a *app) printSignal(subject string, data []byte) {
	if a.json {
		fmt.Fprintln(a.io.Out, string(data))
		return
	}
	s, err := bus.DecodeSignal(data)
	if err != nil {
		fmt.Fprintf(a.io.Out, "%s  (not a pollgrid signal: %v) %s\n", subject, err, cut(string(data), 80))
		return
	}
	observed := s.GetObservedAt().AsTime().Local()
	when := observed.Format(time.TimeOnly)
	if y, m, d := observed.Date(); y != time.Now().Year() || m != time.Now().Month() || d != time.Now().Day() {
		when = observed.Format(time.DateTime) // a stored signal of another day
	}
	fmt.Fprintf(a.io.Out, "%s  %-7s  %s/%s  %s  version %s  %s\n",
		when, s.GetChange(), s.GetConnectorType(), s.GetConnector(),
		s.GetItemId(), s.GetVersion(), cut(string(s.GetData()), 100))
}
