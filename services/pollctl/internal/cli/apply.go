package cli

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
)

// partShare is the share of the server's largest message (1 MiB unless
// its max_payload says otherwise) one apply request's connectors fill,
// leaving room for the budgets and the JSON around them.
const partShare = 0.75

// partsInFlight is how many parts of a file are applied at once, after the
// first: the scheduler checks and writes each on its own goroutine.
const partsInFlight = 4

// deleteBatch is how many definitions one delete request names.
const deleteBatch = 1000

// applyShown is how many names of each list the summary shows.
const applyShown = 10

type applyFlags struct {
	file       string
	prune      bool
	dryRun     bool
	chunkBytes int
}

func (a *app) applyCmd() *cobra.Command {
	var f applyFlags
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Write a connectors file to the catalog, as a difference",
		Long: `apply writes the connectors and budgets of a file to the catalog (the NATS KV
bucket pollgrid-connectors) as written, ${VAR} secrets unresolved: a worker
resolves them from its own environment when it polls. Only what is new or
changed is written, each on condition of the revision it replaces; the rest is
untouched, and applying the same file again writes nothing. The scheduler
picks the changes up at once. Served by the scheduler.

The file is checked here first, as the services check it (${VAR} left as
written), and a file with problems is not sent: every problem is listed, as
pollctl validate lists them. The scheduler checks it again before it writes.

--prune deletes the connectors and budgets the file does not hold, connectors
first (the file is then the whole catalog). --dry-run prints the difference
and writes nothing. A big file is sent in parts (a NATS message is 1 MiB by
default), each with all the budgets; a part that someone else changed
meanwhile is asked again once. Applying again finishes an apply cut short.
Exits 1 when the file has problems or a conflict remains.`,
		Example: `  pollctl apply -f connectors.json
  pollctl apply -f connectors.json --prune --dry-run
  ./generate-connectors | pollctl apply -f - --prune
  pollctl apply -f connectors.json --json | jq '.changed[].name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.apply(cmd.Context(), f) },
	}
	cmd.Flags().StringVarP(&f.file, "filename", "f", "", `the connectors file to apply; "-" reads standard input`)
	cmd.Flags().BoolVar(&f.prune, "prune", false, "delete the connectors and budgets the file does not hold")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "print the difference only; write nothing")
	cmd.Flags().IntVar(&f.chunkBytes, "chunk-bytes", 0, "bytes of connectors per request (default 3/4 of the server's max_payload)")
	_ = cmd.Flags().MarkHidden("chunk-bytes")
	return cmd
}

func (a *app) apply(ctx context.Context, f applyFlags) error {
	source, data, err := a.readFile(f.file)
	if err != nil {
		return err
	}
	// What the catalog holds, with a digest of each value: a connector it
	// holds as written is neither checked again nor sent. Without the
	// catalog the whole file is checked, so that its problems are said
	// before the connection's.
	c, cerr := a.client()
	var held []admin.Ref
	if cerr == nil {
		if f.prune {
			held, cerr = c.AllDefinitions(ctx) // what the file lacks goes
		} else {
			held, cerr = c.HeldOf(ctx, refsIn(data))
		}
		if cerr != nil {
			cerr = adminError(cerr)
		}
	}
	connectorSums := make(map[string]catalog.Sum, len(held))
	budgetSums := map[string]string{}
	for _, r := range held {
		switch r.Kind {
		case admin.KindConnector:
			if sum, ok := sumOf(r.Sum); ok {
				connectorSums[r.Name] = sum
			}
		case admin.KindBudget:
			budgetSums[r.Name] = r.Sum
		}
	}
	var known config.Known
	if cerr == nil {
		// A connector the catalog does not hold costs a lookup, not a digest.
		known = func(name string, written []byte) bool {
			sum, held := connectorSums[name]
			return held && sum == catalog.SumOf(written)
		}
	}
	defs, err := config.ParseDefinitionsKnown(source, data, builtin.Registry(), known)
	if err != nil {
		problems := problemsOf(err)
		a.printRefused(source, problems)
		return fail(ExitFailed, "%s is not valid: fix the %s above; nothing was sent", source, plural(len(problems), "problem"))
	}
	if cerr != nil {
		return cerr
	}
	for _, p := range defs.Warnings {
		fmt.Fprintf(a.io.Err, "warning: %s: %s\n", p.Path, p.Message)
	}
	budgets := map[string]json.RawMessage{}
	budgetsChanged := false
	for _, b := range defs.Budgets {
		budgets[b.Name] = b.Value
		budgetsChanged = budgetsChanged || budgetSums[b.Name] != catalog.SumOf(b.Value).String()
	}
	changed := slices.DeleteFunc(slices.Clone(defs.Connectors), func(d config.Definition) bool { return known(d.Name, d.Value) })
	if f.chunkBytes <= 0 {
		f.chunkBytes = int(float64(c.MaxPayload()) * partShare)
	}
	tally := newApplyTally(len(budgets))
	if len(changed) > 0 || budgetsChanged {
		if tally, err = a.applyParts(ctx, c, source, changed, f.chunkBytes, budgets, f.dryRun); err != nil {
			return err
		}
	}
	tally.connectorUnchanged += len(defs.Connectors) - len(changed)
	diff := tally.result()
	diff.DryRun = f.dryRun
	if f.prune {
		deleted, err := a.prune(ctx, c, defs, held, f.dryRun)
		diff.Deleted = deleted
		if err != nil {
			return err
		}
	}
	if a.json {
		return a.printJSON(diff)
	}
	printApply(a.io.Out, source, diff)
	return nil
}

// applyParts sends the parts of a file. The first goes alone: it writes
// the budgets, which every part carries, so that the others find them
// unchanged; the rest go partsInFlight at a time. A part the scheduler
// refuses stops the rest; the parts applied before it stay (applying
// again finishes).
func (a *app) applyParts(ctx context.Context, c *admin.Client, source string, connectors []config.Definition, partBytes int,
	budgets map[string]json.RawMessage, dryRun bool) (*applyTally, error) {
	parts := chunks(connectors, partBytes)
	if len(parts) == 0 {
		parts = [][]config.Definition{nil} // the budgets alone
	}
	tally := newApplyTally(len(budgets))
	starts := make([]int, len(parts))
	for i := 1; i < len(parts); i++ {
		starts[i] = starts[i-1] + len(parts[i-1])
	}
	var mu sync.Mutex
	done := 0
	send := func(ctx context.Context, i int) error {
		req := admin.ApplyRequest{Budgets: budgets, DryRun: dryRun}
		for _, d := range parts[i] {
			req.Connectors = append(req.Connectors, d.Value)
		}
		reply, err := c.Apply(ctx, req)
		if code(err) == admin.CodeConflict {
			// The scheduler has read what was written meanwhile: it plans again.
			reply, err = c.Apply(ctx, req)
		}
		mu.Lock()
		defer mu.Unlock()
		switch e := (*admin.Error)(nil); {
		case err == nil:
			tally.add(reply)
			done++
			return nil
		case errors.As(err, &e) && e.Code == admin.CodeBadRequest && len(e.Problems) > 0:
			a.printRefused(source, rebase(e.Problems, starts[i]))
			return fail(ExitFailed, "the scheduler refused part %d of %d of %s: %s%s", i+1, len(parts), source, e.Message, applied(done, len(parts)))
		case errors.As(err, &e) && e.Code == admin.CodeConflict:
			return fail(ExitFailed, "part %d of %d of %s, asked twice: %s%s", i+1, len(parts), source, e.Message, applied(done, len(parts)))
		default:
			return withNote(adminError(err), applied(done, len(parts)))
		}
	}
	if err := send(ctx, 0); err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(partsInFlight)
	for i := 1; i < len(parts); i++ {
		g.Go(func() error { return send(gctx, i) })
	}
	return tally, g.Wait()
}

// sumOf reads a digest the catalog lists (catalog.Sum.String); false for
// one no digest's String writes, which no definition matches.
func sumOf(listed string) (catalog.Sum, bool) {
	var sum catalog.Sum
	if len(listed) != hex.EncodedLen(len(sum)) {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(listed)); err != nil || sum.String() != listed {
		return sum, false
	}
	return sum, true
}

// refsIn names the connectors and budgets of a file, at a glance: for a
// file that does not read so, none (its check then says why).
func refsIn(data []byte) []admin.Ref {
	connectors, budgets := config.Names(data)
	refs := make([]admin.Ref, 0, len(connectors)+len(budgets))
	for _, name := range budgets {
		refs = append(refs, admin.Ref{Kind: admin.KindBudget, Name: name})
	}
	for _, name := range connectors {
		refs = append(refs, admin.Ref{Kind: admin.KindConnector, Name: name})
	}
	return refs
}

// prune deletes (dryRun: lists) the definitions of the catalog the file
// does not hold, connectors first, each on condition of its revision.
// listed is what the catalog held before the apply (which deletes
// nothing).
func (a *app) prune(ctx context.Context, c *admin.Client, defs *config.Definitions, listed []admin.Ref, dryRun bool) ([]admin.Ref, error) {
	want := map[admin.Ref]bool{}
	for _, d := range defs.Connectors {
		want[admin.Ref{Kind: admin.KindConnector, Name: d.Name}] = true
	}
	for _, d := range defs.Budgets {
		want[admin.Ref{Kind: admin.KindBudget, Name: d.Name}] = true
	}
	var gone []admin.Ref
	for _, r := range listed {
		if !want[admin.Ref{Kind: r.Kind, Name: r.Name}] {
			gone = append(gone, r)
		}
	}
	// Connectors before the budgets they may name.
	slices.SortStableFunc(gone, func(x, y admin.Ref) int { return -cmp.Compare(x.Kind, y.Kind) })
	if dryRun {
		return withoutRevisions(gone), nil
	}
	var deleted []admin.Ref
	for len(gone) > 0 {
		n := min(deleteBatch, len(gone))
		if i := slices.IndexFunc(gone[:n], func(r admin.Ref) bool { return r.Kind != gone[0].Kind }); i > 0 {
			n = i // every connector is gone before a budget goes
		}
		reply, err := c.Delete(ctx, gone[:n])
		if err != nil {
			return deleted, withNote(adminError(err), fmt.Sprintf("; the file was applied, and %d definitions pruned before", len(deleted)))
		}
		deleted = append(deleted, withoutRevisions(reply.Deleted)...)
		gone = gone[n:]
	}
	return deleted, nil
}

// readFile reads the file to apply; "-" is standard input.
func (a *app) readFile(path string) (source string, data []byte, err error) {
	switch path {
	case "":
		return "", nil, fail(ExitUsage, `give the file to apply: -f FILE, or -f - to read standard input`)
	case "-":
		data, err = io.ReadAll(a.io.In)
		if err != nil {
			return "", nil, fail(ExitFailed, "read standard input: %v", err)
		}
		return "standard input", data, nil
	}
	data, err = os.ReadFile(path)
	if err != nil {
		return "", nil, fail(ExitUsage, "read the file to apply: %v", err)
	}
	return path, data, nil
}

// chunks splits the connectors into parts of at most about max bytes, each
// with one connector at least.
func chunks(list []config.Definition, max int) [][]config.Definition {
	var out [][]config.Definition
	size := 0
	for i, d := range list {
		if i == 0 || size+len(d.Value)+1 > max {
			out = append(out, nil)
			size = 0
		}
		out[len(out)-1] = append(out[len(out)-1], d)
		size += len(d.Value) + 1
	}
	return out
}

// applyTally merges the replies of the parts. Every part carries every
// budget: a budget counts once, as created or changed when any part wrote
// it, else unchanged.
type applyTally struct {
	budgets            int
	listed             map[admin.Ref]bool
	created, changed   []admin.Ref
	connectorUnchanged int
}

func newApplyTally(budgets int) *applyTally {
	return &applyTally{budgets: budgets, listed: map[admin.Ref]bool{}}
}

func (t *applyTally) add(r admin.ApplyReply) {
	budgetsListed := 0
	for _, list := range []struct {
		refs []admin.Ref
		to   *[]admin.Ref
	}{{r.Created, &t.created}, {r.Changed, &t.changed}} {
		for _, ref := range list.refs {
			if ref.Kind == admin.KindBudget {
				budgetsListed++
				if t.listed[ref] {
					continue
				}
				t.listed[ref] = true
			}
			*list.to = append(*list.to, ref)
		}
	}
	t.connectorUnchanged += r.Unchanged - (t.budgets - budgetsListed)
}

func (t *applyTally) result() admin.ApplyReply {
	byKindThenName := func(x, y admin.Ref) int { return cmp.Or(cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Name, y.Name)) }
	slices.SortFunc(t.created, byKindThenName)
	slices.SortFunc(t.changed, byKindThenName)
	return admin.ApplyReply{Created: t.created, Changed: t.changed, Unchanged: t.connectorUnchanged + t.budgets - len(t.listed)}
}

func printApply(w io.Writer, source string, d admin.ApplyReply) {
	for _, list := range []struct {
		refs []admin.Ref
		verb string
	}{{d.Created, "created"}, {d.Changed, "changed"}, {d.Deleted, "deleted"}} {
		for _, r := range list.refs[:min(len(list.refs), applyShown)] {
			fmt.Fprintf(w, "%s %s\n", refName(r), list.verb)
		}
		if n := len(list.refs) - applyShown; n > 0 {
			fmt.Fprintf(w, "... and %d more %s\n", n, list.verb)
		}
	}
	summary := fmt.Sprintf("%s: %d created, %d changed, %d deleted, %d unchanged", source, len(d.Created), len(d.Changed), len(d.Deleted), d.Unchanged)
	if d.DryRun {
		summary += " (dry run: nothing was written)"
	}
	fmt.Fprintln(w, summary)
}

// refName is a connector's name, or "budget NAME".
func refName(r admin.Ref) string {
	if r.Kind == admin.KindBudget {
		return "budget " + r.Name
	}
	return r.Name
}

// problemsOf lists a check's problems.
func problemsOf(err error) []admin.Problem {
	var problems *config.Problems
	if !errors.As(err, &problems) {
		return []admin.Problem{{Message: err.Error()}}
	}
	out := make([]admin.Problem, len(problems.List))
	for i, p := range problems.List {
		out[i] = admin.Problem{Path: p.Path, Message: p.Message}
	}
	return out
}

// printRefused prints the problems of a file refused, as validate does
// (--json: validate's JSON).
func (a *app) printRefused(source string, problems []admin.Problem) {
	if a.json {
		_ = a.printJSON(validateReply{File: source, Problems: problems})
		return
	}
	printProblems(a.io.Out, source, problems)
}

// printProblems lists problems as validate does.
func printProblems(w io.Writer, source string, problems []admin.Problem) {
	fmt.Fprintf(w, "%s: %s\n", source, plural(len(problems), "problem"))
	for _, p := range problems {
		if p.Path != "" {
			fmt.Fprintf(w, "  %s: %s\n", p.Path, p.Message)
		} else {
			fmt.Fprintf(w, "  %s\n", p.Message)
		}
	}
}

var partIndex = regexp.MustCompile(`^connectors\[(\d+)\]`)

// rebase turns a part's connectors[i] into the file's connectors[start+i].
func rebase(problems []admin.Problem, start int) []admin.Problem {
	out := slices.Clone(problems)
	for i, p := range out {
		if m := partIndex.FindStringSubmatch(p.Path); m != nil {
			n, _ := strconv.Atoi(m[1])
			out[i].Path = fmt.Sprintf("connectors[%d]", start+n) + p.Path[len(m[0]):]
		}
	}
	return out
}

func applied(done, parts int) string {
	switch {
	case parts == 1:
		return ""
	case done == 0:
		return "; nothing was applied"
	}
	return fmt.Sprintf("; %d of the %d parts were applied: apply again to finish", done, parts)
}

func withNote(err error, note string) error {
	var ee *exitError
	if note == "" || !errors.As(err, &ee) {
		return err
	}
	return &exitError{code: ee.code, err: fmt.Errorf("%w%s", ee.err, note)}
}

func code(err error) int {
	var e *admin.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func withoutRevisions(refs []admin.Ref) []admin.Ref {
	out := make([]admin.Ref, len(refs))
	for i, r := range refs {
		out[i] = admin.Ref{Kind: r.Kind, Name: r.Name}
	}
	return out
}
