// Command pollctl operates a running pollgrid over NATS: list, status,
// trigger, pause, resume, reset, reload and tail; and, locally, validate a
// config or dry-run one poll. `pollctl --help` says more; docs/operate.md
// has a session and the runbooks.
package main

import (
	"os"

	"github.com/pollgrid/pollgrid/services/pollctl/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Env: os.LookupEnv}))
}
