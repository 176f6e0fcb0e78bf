package cli

import (
	"fmt"
	"os"
	"os/user"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pollgrid/pollgrid/pkg/admin"
)

func (a *app) listCmd() *cobra.Command {
	var req admin.ListRequest
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List connectors, failing and stale first",
		Long: `list shows every connector with its health, last success, success rate, p95
latency and last error; failing connectors first, then stale, new, paused, ok
and disabled. Served by the aggregator.

Healths: failing (the last poll failed), stale (no poll for
AGGREGATOR_STALE_AFTER intervals), new (never polled), paused, ok, disabled.`,
		Example: `  pollctl list
  pollctl list --health stale
  pollctl list --type github-releases --json | jq -r '.connectors[].name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			reply, err := c.ListAll(cmd.Context(), req)
			if err != nil {
				return adminError(err)
			}
			if a.json {
				return a.printJSON(reply)
			}
			printList(a.io.Out, reply, req.Query != "" || req.Type != "" || req.Health != "")
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Query, "query", "", "only connectors whose name contains this")
	cmd.Flags().StringVar(&req.Type, "type", "", "only connectors of this type")
	cmd.Flags().StringVar(&req.Health, "health", "", "only connectors of this health: failing, stale, new, paused, ok, disabled")
	return cmd
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status NAME",
		Short: "Show one connector: health, freshness, cursor, lease and recent polls",
		Long: `status shows everything about one connector: its health and freshness,
where its next poll starts (cursor, ETag, Last-Modified), how many item versions
it remembers, who holds its lease and with which fencing token, its back-off
and its recent polls. Served by the aggregator.`,
		Example: `  pollctl status noaa-alerts-ca
  pollctl status noaa-alerts-ca --json | jq .lease`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context(), args[0])
			if err != nil {
				return adminError(err)
			}
			if a.json {
				return a.printJSON(st)
			}
			printStatus(a.io.Out, st)
			return nil
		},
	}
}

func (a *app) triggerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "trigger NAME",
		Short: "Poll a connector now, once, and say how it went",
		Long: `trigger polls the connector now, once, on a worker, under its lease (it waits
for a poll that is running to end), even if the connector is paused or backing
off, and prints the outcome. The poll publishes its signals and is reported
like any other. Exits 1 when the poll failed.`,
		Example: `  pollctl trigger noaa-alerts-ca
  pollctl trigger noaa-alerts-ca --json | jq .outcome`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Trigger(cmd.Context(), args[0])
			if err != nil {
				return adminError(err)
			}
			if a.json {
				if err := a.printJSON(r); err != nil {
					return err
				}
			} else {
				printTrigger(a.io.Out, r)
			}
			// Its error is in the answer printed above, once.
			switch r.Outcome {
			case "success":
			case "failure":
				return fail(ExitFailed, "the poll of %s failed", r.Connector)
			default:
				return fail(ExitFailed, "the poll of %s ended %s", r.Connector, r.Outcome)
			}
			return nil
		},
	}
}

func (a *app) pauseCmd() *cobra.Command {
	var by string
	cmd := &cobra.Command{
		Use:   "pause NAME",
		Short: "Stop polling a connector until resume",
		Long: `pause stops a connector's polls: its message schedule and any pending tick are
removed, and a worker that still gets a tick skips it. A poll running now
finishes. The pause is kept in Redis: it survives scheduler failovers,
restarts and reloads. Served by the scheduler.`,
		Example: `  pollctl pause noaa-alerts-ca
  pollctl pause noaa-alerts-ca --by "alice (upstream maintenance)"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Pause(cmd.Context(), args[0], by)
			if err != nil {
				return adminError(err)
			}
			if a.json {
				return a.printJSON(r)
			}
			if r.Already {
				fmt.Fprintf(a.io.Out, "%s was already paused, since %s by %s\n", r.Connector, clock(r.Since), orUnknown(r.By))
			} else {
				fmt.Fprintf(a.io.Out, "paused %s (pollctl resume %s to poll it again)\n", r.Connector, r.Connector)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&by, "by", defaultBy(), "who pauses, shown by status and the status page")
	return cmd
}

func (a *app) resumeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "resume NAME",
		Short: "Poll a paused connector again",
		Long: `resume clears a pause: the connector's schedule is installed again and, when it
is overdue, it is polled at once. Served by the scheduler.`,
		Example: `  pollctl resume noaa-alerts-ca`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Resume(cmd.Context(), args[0])
			if err != nil {
				return adminError(err)
			}
			if a.json {
				return a.printJSON(r)
			}
			switch {
			case !r.WasPaused:
				fmt.Fprintf(a.io.Out, "%s was not paused: nothing changed\n", r.Connector)
			case !r.Scheduled:
				fmt.Fprintf(a.io.Out, "resumed %s; the config disables it, so it is not scheduled\n", r.Connector)
			case r.FirstTick:
				fmt.Fprintf(a.io.Out, "resumed %s, paused since %s; it is overdue and polls now\n", r.Connector, clock(*r.PausedAt))
			default:
				fmt.Fprintf(a.io.Out, "resumed %s, paused since %s\n", r.Connector, clock(*r.PausedAt))
			}
			return nil
		},
	}
}

func (a *app) resetCmd() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "reset NAME --yes",
		Short: "Forget a connector's cursor and seen versions (republishes everything)",
		Long: `reset forgets the connector's cursor, ETag, Last-Modified and the versions of the
items it has seen, under its lease. Its next poll starts over and publishes
every current item as created, with new signal ids (ending in :g<generation>)
so that JetStream keeps them. Its history, failures and back-off stay.
Served by a worker. Needs --yes.`,
		Example: `  pollctl reset github-nats-releases --yes
  pollctl reset github-nats-releases --yes && pollctl trigger github-nats-releases`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return fail(ExitUsage, "reset %s forgets its cursor and seen versions, and its next poll publishes every current item again: add --yes", args[0])
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Reset(cmd.Context(), args[0], args[0])
			if err != nil {
				return adminError(err)
			}
			if a.json {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.io.Out, "reset %s: %d item versions forgotten, generation %d; its next poll publishes every current item as created\n",
				r.Connector, r.ItemsForgotten, r.Generation)
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the reset")
	return cmd
}

func (a *app) reloadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Reload the config on every service (as SIGHUP does)",
		Long: `reload asks every pollgrid process to read its config file again, as SIGHUP
does, and prints each one's answer. A file with problems is rejected whole and
the running config stays; the problems are listed. Exits 1 when any process
rejected it or did not answer.`,
		Example: `  pollctl reload
  pollctl validate connectors.json && pollctl reload`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			replies, missing, err := c.Reload(cmd.Context())
			if err != nil {
				return adminError(err)
			}
			if a.json {
				if err := a.printJSON(map[string]any{"replies": replies, "missing": missing}); err != nil {
					return err
				}
			} else {
				printReload(a.io.Out, replies, missing)
			}
			rejected := 0
			for _, r := range replies {
				if !r.OK {
					rejected++
				}
			}
			switch all := len(replies) + len(missing); {
			case rejected > 0 && len(missing) > 0:
				return fail(ExitFailed, "%d of %d processes rejected the config and %d did not answer", rejected, all, len(missing))
			case rejected > 0:
				return fail(ExitFailed, "%d of %d processes rejected the config: fix the problems above, then reload again", rejected, all)
			case len(missing) > 0:
				return fail(ExitFailed, "%d of %d processes did not answer: check their logs", len(missing), all)
			}
			return nil
		},
	}
}

func defaultBy() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if host, err := os.Hostname(); err == nil {
		name += "@" + strings.SplitN(host, ".", 2)[0]
	}
	return name
}

func orUnknown(s string) string {
	if s == "" {
		return "someone"
	}
	return s
}
