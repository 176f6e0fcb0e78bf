package cli

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/pollgrid/pollgrid/pkg/bus"
)

func (a *app) tailCmd() *cobra.Command {
	var count int
	cmd := &cobra.Command{
		Use:   "tail [SUBJECT]",
		Short: "Print signals as they are published",
		Long: `tail subscribes to SUBJECT (default signals.>) and prints each signal on one
line: when it was observed, created or updated, the connector, the item id and
version, and the start of its data. --json prints each signal's body, one JSON
document a line. It runs until interrupted, or until --count signals.`,
		Example: `  pollctl tail
  pollctl tail 'signals.github-releases.>'
  pollctl tail --json | jq .data.tag_name`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			subject := bus.SignalPrefix + ".>"
			if len(args) == 1 {
				subject = args[0]
			}
			if _, err := a.client(); err != nil {
				return err
			}
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
			for n := 0; count == 0 || n < count; n++ {
				select {
				case <-cmd.Context().Done():
					return nil
				case m := <-msgs:
					a.printSignal(m)
				}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&count, "count", 0, "stop after this many signals (0: run until interrupted)")
	return cmd
}

func (a *app) printSignal(m *nats.Msg) {
	if a.json {
		fmt.Fprintln(a.io.Out, string(m.Data))
		return
	}
	s, err := bus.DecodeSignal(m.Data)
	if err != nil {
		fmt.Fprintf(a.io.Out, "%s  (not a pollgrid signal: %v) %s\n", m.Subject, err, cut(string(m.Data), 80))
		return
	}
	fmt.Fprintf(a.io.Out, "%s  %-7s  %s/%s  %s  version %s  %s\n",
		s.GetObservedAt().AsTime().Local().Format(time.TimeOnly), s.GetChange(), s.GetConnectorType(), s.GetConnector(),
		s.GetItemId(), s.GetVersion(), cut(string(s.GetData()), 100))
}
