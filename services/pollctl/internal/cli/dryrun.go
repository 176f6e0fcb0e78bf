package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/poll"
	"github.com/pollgrid/pollgrid/pkg/redact"
	"github.com/pollgrid/pollgrid/pkg/service"
	"github.com/pollgrid/pollgrid/pkg/store"
	"github.com/pollgrid/pollgrid/pkg/upstream"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// dryRunReply is dry-run's --json: what one poll would publish and write.
type dryRunReply struct {
	Connector string `json:"connector"`
	Type      string `json:"type"`
	// From is where the poll started: "redis" (the stored state, read
	// only) or "fresh" (no state, as after a reset).
	From        string         `json:"from"`
	Outcome     string         `json:"outcome"`
	Error       string         `json:"error,omitempty"`
	Attempts    int            `json:"attempts"`
	Fetched     int            `json:"fetched"`
	NotModified bool           `json:"not_modified"`
	Signals     []dryRunSignal `json:"signals"`
	FailedItems []string       `json:"failed_items,omitempty"`
	// State is what the poll would commit, and SeenItems how many items
	// the connector would remember after it.
	State     dryRunState `json:"state"`
	SeenItems int         `json:"seen_items"`
}

type dryRunSignal struct {
	ID      string          `json:"id"`
	Subject string          `json:"subject"`
	Change  string          `json:"change"`
	ItemID  string          `json:"item_id"`
	Version string          `json:"version"`
	Data    json.RawMessage `json:"data"`
}

type dryRunState struct {
	Cursor              string     `json:"cursor,omitempty"`
	ETag                string     `json:"etag,omitempty"`
	LastModified        string     `json:"last_modified,omitempty"`
	LastPoll            *time.Time `json:"last_poll,omitempty"`
	LastSuccess         *time.Time `json:"last_success,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	LastError           string     `json:"last_error,omitempty"`
	NotBefore           *time.Time `json:"not_before,omitempty"`
}

// recorder stands in for the signal publisher: it publishes nothing.
type recorder struct{}

func (recorder) PublishSignals(context.Context, []*pollgridv1.Signal) (int, error) { return 0, nil }

// noneSeen is the seen versions of a fresh start: none.
type noneSeen struct{}

func (noneSeen) Seen(context.Context, string) (map[string]store.SeenEntry, error) {
	return map[string]store.SeenEntry{}, nil
}

func (noneSeen) SeenData(_ context.Context, _ string, ids []string) ([][]byte, error) {
	return make([][]byte, len(ids)), nil
}

func (noneSeen) SeenEntries(_ context.Context, _ string, ids []string) ([]store.SeenEntry, error) {
	return make([]store.SeenEntry, len(ids)), nil
}

func (a *app) dryRunCmd() *cobra.Command {
	var file string
	var fresh bool
	cmd := &cobra.Command{
		Use:   "dry-run NAME",
		Short: "Poll one connector locally and print what it would publish and write",
		Long: `dry-run polls one connector once, from this machine: its config from the local
file (--config, CONNECTORS_FILE, or ./connectors.json) with ${VAR} secrets from
this environment, and its stored state (cursor, seen versions) read from Redis
(REDIS_URL, REDIS_PREFIX) without writing, or none with --fresh. It prints the
signals the poll would publish and the state it would commit. It publishes
nothing, takes no lease and writes nothing: not to NATS, not to Redis. It calls
the upstream for real. Exits 1 when the poll fails.`,
		Example: `  pollctl dry-run noaa-alerts-ca
  pollctl dry-run noaa-alerts-ca --fresh --json | jq '.signals | length'
  REDIS_URL=redis://redis.internal:6379 pollctl dry-run github-nats-releases --config prod.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.dryRun(cmd.Context(), args[0], file, fresh)
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "connectors file (default CONNECTORS_FILE, else ./connectors.json)")
	cmd.Flags().BoolVar(&fresh, "fresh", false, "start from no state, as after a reset, without reading Redis")
	return cmd
}

func (a *app) dryRun(ctx context.Context, name, file string, fresh bool) error {
	env := a.io.Env
	if file != "" {
		env = func(k string) (string, bool) {
			if k == "CONNECTORS_FILE" {
				return file, true
			}
			return a.io.Env(k)
		}
	}
	registry := builtin.Registry()
	cfg, source, err := config.Load(env, registry)
	if err != nil {
		return fail(ExitFailed, "%v", err)
	}
	c, ok := cfg.Lookup(name)
	if !ok {
		return fail(ExitNotFound, "no connector named %q in %s", name, source)
	}
	redactor := redact.New(cfg.Secrets()...)
	logger := slog.New(slog.DiscardHandler)
	// The same outbound guard as a worker's, with the same exceptions.
	allow, err := egress.Parse("UPSTREAM_ALLOW", service.List(env, "UPSTREAM_ALLOW"))
	if err != nil {
		return fail(ExitFailed, "%v", err)
	}
	conn, err := registry.New(c.Type, c.Config, connector.Deps{HTTP: upstream.NewClient(upstream.Options{Allow: allow}), Logger: logger})
	if err != nil {
		return fail(ExitFailed, "build connector %s: %v", name, redactor.Error(err))
	}
	runner := &poll.Runner{Publisher: recorder{}, Seen: noneSeen{}, Redactor: redactor}
	reply := dryRunReply{Connector: c.Name, Type: c.Type, From: "fresh", Signals: []dryRunSignal{}}
	var prev store.State
	if !fresh {
		st, closeRedis, err := readOnlyStore(env)
		if err != nil {
			return err
		}
		defer closeRedis()
		if prev, err = st.State(ctx, c.Name); err != nil {
			return fail(ExitUnavailable, "read the state of %s from Redis: %v (start without it: --fresh)", c.Name, err)
		}
		count, err := st.SeenCount(ctx, c.Name)
		if err != nil {
			return fail(ExitUnavailable, "read the seen items of %s from Redis: %v (start without them: --fresh)", c.Name, err)
		}
		prev.SeenCount = int(count)
		runner.Seen, reply.From = st, "redis"
	}
	out := runner.Run(ctx, c, conn, prev, nil)
	reply.Attempts, reply.Fetched, reply.NotModified = out.Attempts, out.Fetched, out.NotModified
	reply.Outcome = "success"
	if out.Err != nil {
		reply.Outcome, reply.Error = "failure", out.Err.Error()
	}
	clean := func(s string) string { return redactor.String(redact.URLsIn(s)) }
	for _, s := range out.Signals {
		data := json.RawMessage(s.GetData())
		if len(data) == 0 {
			data = json.RawMessage("null")
		}
		msg := bus.SignalMsg(s)
		reply.Signals = append(reply.Signals, dryRunSignal{ID: msg.Header.Get("ce-id"), Subject: msg.Subject,
			Change: s.GetChange(), ItemID: s.GetItemId(), Version: s.GetVersion(), Data: data})
	}
	for _, f := range out.Failed {
		reply.FailedItems = append(reply.FailedItems, f.ID+": "+clean(f.Err.Error()))
	}
	next := out.Commit.State
	reply.State = dryRunState{
		Cursor: clean(next.Cursor), ETag: clean(next.ETag), LastModified: clean(next.LastModified),
		LastPoll: timePtr(next.LastPoll), LastSuccess: timePtr(next.LastSuccess),
		ConsecutiveFailures: next.ConsecutiveFailures, LastError: next.LastError, NotBefore: timePtr(next.NotBefore),
	}
	reply.SeenItems = out.Remembered
	if a.json {
		if err := a.printJSON(reply); err != nil {
			return err
		}
	} else {
		a.printDryRun(reply)
	}
	if out.Err != nil {
		// Its error is in the report printed above, once.
		return fail(ExitFailed, "the dry-run poll of %s failed", c.Name)
	}
	return nil
}

// readOnlyStore opens the store the services use, for reads only.
func readOnlyStore(env config.Env) (*store.Store, func(), error) {
	url, _ := env("REDIS_URL")
	rdb, _, err := service.NewRedisClient("pollctl", env, cmp.Or(url, "redis://127.0.0.1:6379"))
	if err != nil {
		return nil, nil, fail(ExitUsage, "%v", err)
	}
	prefix, _ := env("REDIS_PREFIX")
	return store.New(rdb, store.Options{Prefix: prefix}), func() { _ = rdb.Close() }, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (a *app) printDryRun(r dryRunReply) {
	w := a.io.Out
	fmt.Fprintf(w, "dry-run of %s (%s), from the %s state: %s after %d attempt(s), %d items fetched",
		r.Connector, r.Type, r.From, r.Outcome, r.Attempts, r.Fetched)
	if r.NotModified {
		fmt.Fprint(w, " (304 Not Modified)")
	}
	fmt.Fprintln(w)
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", r.Error)
	}
	fmt.Fprintf(w, "\nwould publish %d signals (nothing was published):\n", len(r.Signals))
	for _, s := range r.Signals {
		fmt.Fprintf(w, "  %-7s  %s  %s  version %s  %s\n", s.Change, s.Subject, s.ItemID, s.Version, cut(string(s.Data), 80))
	}
	for _, f := range r.FailedItems {
		fmt.Fprintf(w, "  failed item %s\n", f)
	}
	fmt.Fprintln(w, "\nwould write this state (nothing was written):")
	t := table(w)
	row := func(k string, v any) { fmt.Fprintf(t, "  %s:\t%v\n", k, v) }
	row("cursor", orDash(r.State.Cursor))
	row("etag", orDash(r.State.ETag))
	row("last-modified", orDash(r.State.LastModified))
	row("consecutive failures", r.State.ConsecutiveFailures)
	switch {
	case r.State.LastError != "" && r.State.LastError == r.Error:
		row("last error", "the error above")
	case r.State.LastError != "":
		row("last error", r.State.LastError)
	}
	if r.State.NotBefore != nil {
		row("not before", clock(*r.State.NotBefore))
	}
	row("seen items", r.SeenItems)
	_ = t.Flush()
}
