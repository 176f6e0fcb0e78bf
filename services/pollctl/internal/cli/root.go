// Package cli is pollctl: one cobra command per verb of the admin API
// (pkg/admin), plus validate, tail and dry-run.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/service"
)

// Exit codes: scripts can tell "it ran and said no" from "ask again later".
const (
	ExitOK = 0
	// ExitFailed: the command ran and the answer is a failure: a config
	// with problems, a triggered poll that failed, a rejected reload.
	ExitFailed = 1
	// ExitUsage: bad arguments or flags, or a reset without --yes.
	ExitUsage = 2
	// ExitNotFound: no connector (budget, revision) of that name.
	ExitNotFound = 3
	// ExitUnavailable: NATS, Redis or the service that serves the verb
	// cannot be reached, or did not answer in time.
	ExitUnavailable = 4
)

// IO is what pollctl reads and writes; Env looks up the environment.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	Env      config.Env
}

// exitError carries an exit code with the error to print.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// app holds what every command shares: the streams and the connection
// flags.
type app struct {
	io      IO
	conn    connFlags
	json    bool
	timeout time.Duration
	nc      *nats.Conn
}

// Main runs pollctl with args and returns the exit code.
func Main(args []string, stdio IO) int {
	a := &app{io: stdio}
	root := a.root()
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if a.nc != nil {
		// A request the server refused gets no answer: say why there was none.
		if refused := a.nc.LastError(); err != nil && errors.Is(refused, nats.ErrPermissionViolation) {
			err = fmt.Errorf("%w (NATS refused it: %v)", err, refused)
		}
		a.nc.Close()
	}
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stdio.Err, "pollctl:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// cobra's own errors: an unknown command or flag, a wrong number of
	// arguments.
	return ExitUsage
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "pollctl",
		Short: "Operate a running pollgrid over NATS",
		Long: `pollctl operates a running pollgrid through its admin API, the NATS micro
service pollgrid-admin on pollgrid.admin.>: list connectors and their health,
look at one, poll it now, pause and resume it, reset it, reload every
service's config, and tail the signals. It keeps the connector catalog (the
NATS KV bucket pollgrid-connectors): apply a file to it, get, delete, list the
history of and roll back one definition. It also validates a config file and
dry-runs one poll locally, without NATS.

Connection: the nats CLI's flags, each with its NATS_* variable (a flag wins
over its variable), and a nats CLI context under them (--context or
NATS_CONTEXT; with nothing else given, the one nats context select chose).
One way to authenticate at a time. docs/operate.md, "Connecting", has the
rules; the services follow the same ones.

Output: tables for people; --json for scripts. An error is printed once: a
failed poll's or a rejected config's in the answer on standard output, and a
one-line summary on standard error. --version prints the build.

Exit codes:
  0  done
  1  it ran and the answer is a failure (config problems, a failed poll, a rejected reload,
     an apply in conflict)
  2  bad arguments or flags (and reset without --yes)
  3  no connector (or budget, or revision) of that name
  4  NATS, Redis or the service serving the verb is unreachable or did not answer`,
		Example: `  pollctl list --health failing
  pollctl status noaa-alerts-ca
  pollctl trigger noaa-alerts-ca
  pollctl pause noaa-alerts-ca && pollctl resume noaa-alerts-ca
  pollctl tail 'signals.weather-noaa.>'
  pollctl validate connectors.json
  pollctl apply -f connectors.json --prune --dry-run
  pollctl history noaa-alerts-ca && pollctl rollback noaa-alerts-ca
  pollctl --server nats://nats.internal:4222 --creds ops.creds list --json`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version prints what the services' -version prints.
		Version: service.VersionString("pollctl"),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	flags := root.PersistentFlags()
	flags.BoolVar(&a.json, "json", false, "print JSON instead of a table")
	flags.DurationVar(&a.timeout, "timeout", 30*time.Second, "how long to wait for an answer (a trigger waits for a whole poll)")
	a.conn.register(flags)
	root.AddCommand(a.validateCmd(), a.listCmd(), a.statusCmd(), a.triggerCmd(), a.pauseCmd(), a.resumeCmd(),
		a.resetCmd(), a.reloadCmd(), a.tailCmd(), a.dryRunCmd())
	root.AddCommand(a.schemaCmd())
	root.AddCommand(a.applyCmd(), a.getCmd(), a.deleteCmd(), a.historyCmd(), a.rollbackCmd())
	return root
}

// client connects to NATS once and returns the admin client.
func (a *app) client() (*admin.Client, error) {
	if a.nc == nil {
		nc, err := a.conn.connect(a.io.Env)
		if err != nil {
			return nil, &exitError{code: ExitUnavailable, err: err}
		}
		a.nc = nc
	}
	return admin.NewClient(a.nc, a.timeout), nil
}

// adminError gives an admin call's error its exit code.
func adminError(err error) error {
	var e *admin.Error
	switch {
	case errors.As(err, &e) && e.Code == admin.CodeNotFound:
		return &exitError{code: ExitNotFound, err: err}
	case errors.As(err, &e) && e.Code == admin.CodeBadRequest:
		return &exitError{code: ExitUsage, err: err}
	case errors.As(err, &e) && e.Code == admin.CodeUnavailable:
		return &exitError{code: ExitUnavailable, err: err}
	case errors.As(err, &e):
		return &exitError{code: ExitFailed, err: err}
	}
	return &exitError{code: ExitUnavailable, err: err}
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.io.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
