package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
)

func (a *app) schemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema [TYPE]",
		Short: "Print the JSON Schema of connectors.json, or the config fields of one type",
		Long: `schema prints the JSON Schema (draft 2020-12) of a connectors file, made from
the config spec of every connector type: an editor given it checks and
completes connectors.json as you write it (docs/connectors.schema.json in the
repository is the same). With a TYPE it prints that type's config fields
instead, each with its kind, default, limits and meaning; with --json, that
type's part of the schema. Needs no NATS.`,
		Example: `  pollctl schema > connectors.schema.json
  pollctl schema github-releases
  pollctl schema http-json --json | jq '.properties | keys'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			registry := builtin.Registry()
			if len(args) == 0 {
				schema, err := config.Schema(registry)
				if err != nil {
					return fail(ExitFailed, "%w", err)
				}
				_, err = a.io.Out.Write(schema)
				return err
			}
			spec, ok := registry.Spec(args[0])
			if !ok {
				hint := ""
				if guess, near := connector.Nearest(args[0], registry.Types()); near {
					hint = fmt.Sprintf("; did you mean %q?", guess)
				}
				return fail(ExitUsage, "unknown connector type %q (known: %s)%s", args[0], strings.Join(registry.Types(), ", "), hint)
			}
			if a.json {
				return a.printJSON(spec.JSONSchema())
			}
			printSpec(a.io.Out, args[0], spec)
			return nil
		},
	}
}

// printSpec writes a type's fields for a terminal: a line per field with
// its kind and limits, then its meaning, indented and wrapped.
func printSpec(w io.Writer, typeName string, spec connector.Spec) {
	fmt.Fprintf(w, "%s: %s\n", typeName, spec.Summary)
	var fields func(prefix string, list []connector.Field)
	fields = func(prefix string, list []connector.Field) {
		for _, f := range list {
			if f.Kind == connector.Object && len(f.Fields) > 0 {
				fields(prefix+f.Name+".", f.Fields)
				continue
			}
			about := []string{string(f.Kind)}
			switch shown := f.DefaultShown(); {
			case f.Required:
				about = append(about, "required")
			case shown != "—":
				about = append(about, "default "+strings.Trim(shown, "`"))
			}
			if f.Secret {
				about = append(about, `secret: write "${VAR}"`)
			}
			fmt.Fprintf(w, "\n%s%s (%s)\n", prefix, f.Name, strings.Join(about, ", "))
			for _, line := range wrap(f.Meaning(), 76) {
				fmt.Fprintf(w, "    %s\n", line)
			}
		}
	}
	fields("", spec.Fields)
}

// wrap breaks text into lines of at most width runes, between words.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len([]rune(line))+1+len([]rune(word)) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
