package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pollgrid/pollgrid/pkg/admin"
)

// kindFlag is --budget: the commands name a connector unless it is given.
func kindFlag(cmd *cobra.Command, budget *bool) {
	cmd.Flags().BoolVar(budget, "budget", false, "NAME is a budget, not a connector")
}

func kindOf(budget bool) string {
	if budget {
		return admin.KindBudget
	}
	return admin.KindConnector
}

func (a *app) getCmd() *cobra.Command {
	var budget bool
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "Print a connector's definition from the catalog, as written",
		Long: `get prints a connector's (--budget: a budget's) definition as the catalog holds
it: as it was applied, ${VAR} secrets unresolved, indented, under its revision
and when it was written. --json prints the definition alone, as written, for
a file or jq. Without a name it lists every definition of the catalog, budgets
first, with its revision. Served by the scheduler.`,
		Example: `  pollctl get noaa-alerts-ca
  pollctl get --budget github-main
  pollctl get noaa-alerts-ca --json | jq .interval
  pollctl get`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if len(args) == 0 {
				refs, err := c.AllDefinitions(cmd.Context())
				if err != nil {
					return adminError(err)
				}
				if a.json {
					return a.printJSON(refs)
				}
				t := table(a.io.Out)
				fmt.Fprintln(t, "KIND\tNAME\tREVISION")
				for _, r := range refs {
					fmt.Fprintf(t, "%s\t%s\t%d\n", strings.TrimSuffix(r.Kind, "s"), r.Name, r.Revision)
				}
				return t.Flush()
			}
			d, err := c.Get(cmd.Context(), kindOf(budget), args[0])
			if err != nil {
				return adminError(err)
			}
			if a.json {
				_, err := fmt.Fprintln(a.io.Out, d.Value)
				return err
			}
			fmt.Fprintf(a.io.Out, "%s, revision %d, written %s\n", refName(admin.Ref{Kind: d.Kind, Name: d.Name}), d.Revision.Revision, clock(d.Created))
			fmt.Fprintln(a.io.Out, indent(d.Value))
			return nil
		},
	}
	kindFlag(cmd, &budget)
	return cmd
}

func (a *app) deleteCmd() *cobra.Command {
	var budget bool
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a connector from the catalog (rollback restores it)",
		Long: `delete deletes a connector (--budget: a budget) from the catalog: the scheduler
removes its schedule at once, and its state in Redis stays. The deletion is
conditional on the revision read just before, so a change someone made
meanwhile is not deleted unseen. Its history stays: pollctl rollback NAME
writes it back. A budget that connectors still name is not deleted.
Served by the scheduler.`,
		Example: `  pollctl delete noaa-alerts-ca
  pollctl delete --budget github-main`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			d, err := c.Get(cmd.Context(), kindOf(budget), args[0])
			if err != nil {
				return adminError(err)
			}
			r, err := c.Delete(cmd.Context(), []admin.Ref{{Kind: d.Kind, Name: d.Name, Revision: d.Revision.Revision}})
			if err != nil {
				return adminError(err)
			}
			if a.json {
				return a.printJSON(r)
			}
			if len(r.Deleted) == 0 {
				fmt.Fprintf(a.io.Out, "%s was already deleted: nothing changed\n", refName(admin.Ref{Kind: d.Kind, Name: d.Name}))
				return nil
			}
			fmt.Fprintf(a.io.Out, "deleted %s (revision %d; pollctl rollback %s%s restores it)\n",
				refName(admin.Ref{Kind: d.Kind, Name: d.Name}), d.Revision.Revision, budgetFlag(budget), d.Name)
			return nil
		},
	}
	kindFlag(cmd, &budget)
	return cmd
}

func (a *app) historyCmd() *cobra.Command {
	var budget bool
	cmd := &cobra.Command{
		Use:   "history NAME",
		Short: "List the revisions the catalog keeps of a connector, and what each changed",
		Long: `history lists the revisions the catalog keeps of a connector's (--budget: a
budget's) definition, oldest first: when each was written, whether it wrote or
deleted it, and which fields it changed. The catalog keeps the last 10 of
each. pollctl rollback writes an older one back. Served by the scheduler.`,
		Example: `  pollctl history noaa-alerts-ca
  pollctl history noaa-alerts-ca --json | jq -r '.revisions[-2].value'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			h, err := c.History(cmd.Context(), kindOf(budget), args[0])
			if err != nil {
				return adminError(err)
			}
			if a.json {
				return a.printJSON(h)
			}
			printHistory(a.io.Out, h)
			return nil
		},
	}
	kindFlag(cmd, &budget)
	return cmd
}

func (a *app) rollbackCmd() *cobra.Command {
	var budget bool
	var revision uint64
	cmd := &cobra.Command{
		Use:   "rollback NAME [--revision N]",
		Short: "Write an older revision of a connector back to the catalog",
		Long: `rollback writes the value of an older revision of a connector's (--budget: a
budget's) definition as its next revision: by default the value before the
latest revision (after a delete, the value deleted), or revision N's (pollctl
history lists them). The value is checked again first, against the catalog as
it is now (a budget it names must still be defined), and written on
condition that the latest revision is still the one read.
Served by the scheduler.`,
		Example: `  pollctl rollback noaa-alerts-ca
  pollctl rollback noaa-alerts-ca --revision 12`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Rollback(cmd.Context(), admin.RollbackRequest{Name: args[0], Kind: kindOf(budget), Revision: revision})
			if err != nil {
				if e := (*admin.Error)(nil); errors.As(err, &e) && len(e.Problems) > 0 {
					a.printRefused("the value to restore of "+args[0], e.Problems)
					return fail(ExitFailed, "%s", e.Message)
				}
				return adminError(err)
			}
			if a.json {
				return a.printJSON(r)
			}
			name := refName(admin.Ref{Kind: r.Kind, Name: r.Name})
			if r.Unchanged {
				fmt.Fprintf(a.io.Out, "%s already holds the value of revision %d: nothing was written\n", name, r.Restored)
			} else {
				fmt.Fprintf(a.io.Out, "rolled %s back to the value of revision %d, written as revision %d\n", name, r.Restored, r.Revision)
			}
			return nil
		},
	}
	kindFlag(cmd, &budget)
	cmd.Flags().Uint64Var(&revision, "revision", 0, "the revision whose value to write back (default: the one before the latest)")
	return cmd
}

func budgetFlag(budget bool) string {
	if budget {
		return "--budget "
	}
	return ""
}

// indent is a definition's JSON indented, its keys in their order.
func indent(value string) string {
	var b bytes.Buffer
	if json.Indent(&b, []byte(value), "", "  ") != nil {
		return value
	}
	return b.String()
}

// historyChangeWidth is how many characters of a revision's changes a row
// shows.
const historyChangeWidth = 100

func printHistory(w io.Writer, h admin.HistoryReply) {
	t := table(w)
	fmt.Fprintln(t, "REVISION\tWRITTEN\tOPERATION\tCHANGE")
	var previous string // the value before, "" when none or deleted
	for _, r := range h.Revisions {
		var change string
		switch {
		case r.Operation == admin.OperationDelete:
			change = "deleted"
		case previous == "":
			change = "created"
		default:
			change = changes(previous, r.Value)
		}
		fmt.Fprintf(t, "%d\t%s\t%s\t%s\n", r.Revision, clock(r.Created), r.Operation, change)
		previous = r.Value
	}
	_ = t.Flush()
}

// changes says in one line which fields differ between two values:
// "interval: 10s → 20s; config.area: CA → AZ".
func changes(before, after string) string {
	old, now := flatten(before), flatten(after)
	var paths []string
	for p := range old {
		if _, ok := now[p]; !ok {
			paths = append(paths, p)
		}
	}
	for p, v := range now {
		if o, ok := old[p]; !ok || o != v {
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		return "no change"
	}
	slices.Sort(paths)
	var parts []string
	for _, p := range paths {
		o, hadOld := old[p]
		n, hasNew := now[p]
		switch {
		case !hadOld:
			parts = append(parts, p+": added "+cut(n, 30))
		case !hasNew:
			parts = append(parts, p+": removed")
		default:
			parts = append(parts, p+": "+cut(o, 30)+" → "+cut(n, 30))
		}
	}
	line := strings.Join(parts, "; ")
	if len([]rune(line)) <= historyChangeWidth {
		return line
	}
	shown := 0
	for n := 0; shown < len(parts) && n+len([]rune(parts[shown])) <= historyChangeWidth-15; shown++ {
		n += len([]rune(parts[shown])) + 2
	}
	if shown == 0 {
		return cut(parts[0], historyChangeWidth-15) + fmt.Sprintf(" (+%d more)", len(parts)-1)
	}
	return strings.Join(parts[:shown], "; ") + fmt.Sprintf(" (+%d more)", len(parts)-shown)
}

// flatten maps each leaf of a JSON value to its text: {"a": {"b": 1}}
// gives "a.b": "1"; a string is shown without its quotes.
func flatten(value string) map[string]string {
	out := map[string]string{}
	dec := json.NewDecoder(strings.NewReader(value))
	dec.UseNumber()
	var tree any
	if dec.Decode(&tree) != nil {
		return out
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, e := range t {
				if path == "" {
					walk(k, e)
				} else {
					walk(path+"."+k, e)
				}
			}
			if len(t) == 0 {
				out[path] = "{}"
			}
		case []any:
			for i, e := range t {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
			if len(t) == 0 {
				out[path] = "[]"
			}
		case string:
			out[path] = t
		default:
			raw, _ := json.Marshal(t)
			out[path] = string(raw)
		}
	}
	walk("", tree)
	return out
}
