package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
)

// validateReply is validate's --json.
type validateReply struct {
	File       string          `json:"file"`
	OK         bool            `json:"ok"`
	Connectors int             `json:"connectors"`
	Enabled    int             `json:"enabled"`
	Problems   []admin.Problem `json:"problems,omitempty"`
	// Warnings are valid but likely not meant (a budget smaller than its
	// connectors ask for); they do not fail the file.
	Warnings []admin.Problem `json:"warnings,omitempty"`
}

func (a *app) validateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a connectors file and list every problem",
		Long: `validate checks a connectors file as a worker builds its connectors, ${VAR}
secrets resolved from this environment (run it where the workers' variables are
set), and lists every problem at once, each with its JSON path and the fix.
apply checks a file as written, leaving ${VAR} to the workers, so a file
validate refuses for a variable unset here may still apply. Exits 0 when the
file is valid, 1 when it has problems. Needs no NATS.`,
		Example: `  pollctl validate connectors.json
  pollctl validate connectors.json --json | jq '.problems[].path'`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, err := config.LoadFile(args[0], a.io.Env, builtin.Registry())
			r := validateReply{File: args[0], OK: err == nil}
			var problems *config.Problems
			switch {
			case err == nil:
				r.Connectors, r.Enabled = len(cfg.Connectors), len(cfg.Enabled())
				for _, p := range cfg.Warnings {
					r.Warnings = append(r.Warnings, admin.Problem{Path: p.Path, Message: p.Message})
				}
			case errors.As(err, &problems):
				for _, p := range problems.List {
					r.Problems = append(r.Problems, admin.Problem{Path: p.Path, Message: p.Message})
				}
			default:
				r.Problems = []admin.Problem{{Message: err.Error()}}
			}
			if a.json {
				if err := a.printJSON(r); err != nil {
					return err
				}
			} else if r.OK {
				fmt.Fprintf(a.io.Out, "%s: ok, %d connectors (%d enabled)\n", r.File, r.Connectors, r.Enabled)
				for _, p := range r.Warnings {
					fmt.Fprintf(a.io.Out, "  warning: %s: %s\n", p.Path, p.Message)
				}
			} else {
				printProblems(a.io.Out, r.File, r.Problems)
			}
			if !r.OK {
				return fail(ExitFailed, "%s is not valid: fix the %s above", r.File, plural(len(r.Problems), "problem"))
			}
			return nil
		},
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
