package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/config"
)

// applySource names a request's definitions in their problems.
const applySource = "the apply request"

// catchUpWait bounds how long a verb that wrote waits for the index to
// hold what it wrote: the next request (pollctl's next part of a file, a
// get) is planned from the index, and must find it there.
const catchUpWait = 2 * time.Second

// Verbs are the admin verbs of the catalog, which the scheduler serves:
// apply, definitions, delete, get, history and rollback. x must follow c
// (Catalog.Follow): apply plans from it, without reading the bucket, and a
// verb waits for it to be synced. types checks the definitions as pollctl
// does. Values leave as written: their ${VAR} references are never
// resolved here.
func Verbs(c *Catalog, x *Index, types config.TypeChecker) map[string]admin.Handler {
	v := &verbs{c: c, x: x, types: types}
	return map[string]admin.Handler{
		admin.VerbApply:       v.apply,
		admin.VerbDefinitions: v.definitions,
		admin.VerbDelete:      v.delete,
		admin.VerbGet:         v.get,
		admin.VerbHistory:     v.history,
		admin.VerbRollback:    v.rollback,
	}
}

type verbs struct {
	c     *Catalog
	x     *Index
	types config.TypeChecker

	// listed is the last listing (listing), made at the index's revision
	// listedAt.
	mu       sync.Mutex
	listed   []admin.Ref
	listedAt uint64
}

// apply checks a part of a file as a file of its own, then writes its
// difference with the index; a definition that fails its check is never
// written.
func (v *verbs) apply(ctx context.Context, data []byte) (any, error) {
	var req admin.ApplyRequest
	if err := admin.Decode(data, &req); err != nil {
		return nil, err
	}
	if err := v.synced(ctx); err != nil {
		return nil, err
	}
	// What the index holds unchanged was checked when it was written: a
	// file applied again costs a digest per connector here, not a check.
	changed, at, unchanged := v.split(req.Connectors)
	defs := &config.Definitions{Source: applySource}
	var err error
	if len(changed) > 0 {
		body, err := partFile(changed, req.Budgets)
		if err != nil {
			return nil, admin.Errorf(admin.CodeBadRequest, "%s: %v", applySource, err)
		}
		if defs, err = config.ParseDefinitions(applySource, body, v.types); err != nil {
			return nil, refused(applySource, renumber(err, at))
		}
	} else if defs.Budgets, err = v.budgets(req.Budgets); err != nil {
		return nil, refused(applySource, err)
	}
	if !req.DryRun {
		v.x.Expect(defs.Connectors, defs.Checked)
		defer v.x.Unexpect(defs.Connectors)
	}
	seen := &recorded{vs: v.x, seen: map[Ref]Version{}}
	diff, err := v.c.Apply(ctx, defs, ApplyOptions{DryRun: req.DryRun, Versions: seen})
	var conflict *ConflictError
	if err != nil && !errors.As(err, &conflict) {
		return nil, err
	}
	diff.Unchanged += unchanged
	if !req.DryRun {
		// The next request plans from the index (the next part of the
		// file, the same file applied again, a get): it must find what was
		// written here, and what someone else wrote in its way (a
		// conflict, asked again). pollctl sends parts four at a time, so
		// this wait overlaps the others' work.
		wait := slices.Concat(diff.Created, diff.Changed)
		if conflict != nil {
			wait = append(wait, conflict.Refs...)
		}
		v.catchUp(ctx, seen.seen, wait)
	}
	if conflict != nil {
		return nil, admin.Errorf(admin.CodeConflict, "%v", conflict)
	}
	return admin.ApplyReply{Created: refsOf(diff.Created, nil), Changed: refsOf(diff.Changed, nil),
		Unchanged: diff.Unchanged, DryRun: req.DryRun}, nil
}

// partFile writes the connectors and budgets of a request as a file, as
// json.Marshal writes {"budgets": budgets, "connectors": connectors} (what
// is checked and stored is what it writes), each connector copied when
// json.Marshal would write it as it is (admin.AppendRaw).
func partFile(connectors []json.RawMessage, budgets map[string]json.RawMessage) ([]byte, error) {
	size := len(`{"budgets":,"connectors":[]}`) + len(connectors)
	for _, c := range connectors {
		size += len(c)
	}
	body := make([]byte, 0, size)
	body = append(body, '{')
	if len(budgets) > 0 {
		written, err := json.Marshal(budgets)
		if err != nil {
			return nil, err
		}
		body = append(append(append(body, `"budgets":`...), written...), ',')
	}
	body = append(body, `"connectors":[`...)
	for i, c := range connectors {
		if i > 0 {
			body = append(body, ',')
		}
		var err error
		if body, err = admin.AppendRaw(body, c); err != nil {
			return nil, err
		}
	}
	return append(body, "]}"...), nil
}

// split counts the connectors of a request the index holds as they are,
// and returns the others (new, changed, or not readable: the check says
// why), with where each is in the request.
func (v *verbs) split(connectors []json.RawMessage) (changed []json.RawMessage, at []int, unchanged int) {
	for i, raw := range connectors {
		// The name first: a connector the index does not hold costs no digest.
		if name := config.NameOf(raw); name != "" {
			if have, ok := v.x.Version(Connector(name)); ok && !have.Deleted && have.Sum == SumOf(config.Compacted(raw)) {
				unchanged++
				continue
			}
		}
		changed = append(changed, raw)
		at = append(at, i)
	}
	return changed, at, unchanged
}

// connectorPath is the start of a problem's path in a checked part.
var connectorPath = regexp.MustCompile(`^connectors\[(\d+)\]`)

// renumber gives the problems of the changed connectors of a request the
// places those connectors have in the request.
func renumber(err error, at []int) error {
	var problems *config.Problems
	if !errors.As(err, &problems) {
		return err
	}
	for i, p := range problems.List {
		if m := connectorPath.FindStringSubmatch(p.Path); m != nil {
			if k, _ := strconv.Atoi(m[1]); k < len(at) {
				problems.List[i].Path = fmt.Sprintf("connectors[%d]", at[k]) + p.Path[len(m[0]):]
			}
		}
	}
	return problems
}

// budgets checks a request's budgets alone (every connector of it was
// unchanged).
func (v *verbs) budgets(raw map[string]json.RawMessage) ([]config.Definition, error) {
	problems := &config.Problems{Source: applySource}
	var out []config.Definition
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		if _, err := config.ParseBudget(applySource, name, raw[name]); err != nil {
			var p *config.Problems
			if !errors.As(err, &p) {
				return nil, err
			}
			for _, x := range p.List {
				x.Path = strings.TrimSuffix("budgets."+name+"."+x.Path, ".")
				problems.List = append(problems.List, x)
			}
			continue
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw[name]); err != nil {
			return nil, err
		}
		out = append(out, config.Definition{Name: name, Value: compact.Bytes()})
	}
	if len(problems.List) > 0 {
		return nil, problems
	}
	return out, nil
}

// definitions lists the definitions the index holds, budgets first.
func (v *verbs) definitions(ctx context.Context, data []byte) (any, error) {
	var req admin.DefinitionsRequest
	if err := admin.Decode(data, &req); err != nil {
		return nil, err
	}
	if req.Offset < 0 || req.Limit < 0 || req.Limit > admin.MaxDefinitions {
		return nil, admin.Errorf(admin.CodeBadRequest, "offset %d, limit %d: give an offset of 0 or more and a limit of 0 to %d",
			req.Offset, req.Limit, admin.MaxDefinitions)
	}
	if req.Limit == 0 {
		req.Limit = admin.MaxDefinitions
	}
	if len(req.Refs) > admin.MaxDefinitions {
		return nil, admin.Errorf(admin.CodeBadRequest, "%d refs: ask for at most %d at a time", len(req.Refs), admin.MaxDefinitions)
	}
	if err := v.synced(ctx); err != nil {
		return nil, err
	}
	if len(req.Refs) > 0 {
		reply := admin.DefinitionsReply{Refs: []admin.Ref{}}
		for _, r := range req.Refs {
			ref, err := refOf(r.Kind, r.Name)
			if err != nil {
				return nil, err
			}
			if have, ok := v.x.Version(ref); ok && !have.Deleted {
				reply.Refs = append(reply.Refs, admin.Ref{Kind: string(ref.Kind), Name: ref.Name, Revision: have.Revision, Sum: have.Sum.String()})
			}
		}
		reply.Total = len(reply.Refs)
		return reply, nil
	}
	all := v.listing()
	page := all[min(req.Offset, len(all)):min(req.Offset+req.Limit, len(all))]
	reply := admin.DefinitionsReply{Refs: page, Total: len(all), Offset: req.Offset}
	if reply.Refs == nil {
		reply.Refs = []admin.Ref{}
	}
	return reply, nil
}

// listing is every definition the index holds, budgets first, sorted: made
// once for the pages of one listing (the index's last revision names it),
// not once a page.
func (v *verbs) listing() []admin.Ref {
	last := v.x.LastRevision()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.listed != nil && v.listedAt == last {
		return v.listed
	}
	type held struct {
		ref  Ref
		have Version
	}
	var all []held
	for ref, have := range v.x.All() {
		if !have.Deleted {
			all = append(all, held{ref, have})
		}
	}
	slices.SortFunc(all, func(a, b held) int { return compareRefs(a.ref, b.ref) })
	v.listed = make([]admin.Ref, len(all))
	for i, h := range all {
		v.listed[i] = admin.Ref{Kind: string(h.ref.Kind), Name: h.ref.Name, Revision: h.have.Revision, Sum: h.have.Sum.String()}
	}
	v.listedAt = last
	return v.listed
}

// delete deletes definitions, connectors first, each on condition of its
// revision. A budget a connector still names is not deleted: the request
// is refused whole.
func (v *verbs) delete(ctx context.Context, data []byte) (any, error) {
	var req admin.DeleteRequest
	if err := admin.Decode(data, &req); err != nil {
		return nil, err
	}
	if len(req.Refs) == 0 {
		return nil, admin.Errorf(admin.CodeBadRequest, "the request names no definition to delete")
	}
	refs := make([]Ref, len(req.Refs))
	last := map[Ref]uint64{}
	for i, r := range req.Refs {
		ref, err := refOf(r.Kind, r.Name)
		if err != nil {
			return nil, err
		}
		refs[i], last[ref] = ref, r.Revision
	}
	if err := v.synced(ctx); err != nil {
		return nil, err
	}
	if err := v.budgetsInUse(refs); err != nil {
		return nil, err
	}
	// Connectors before the budgets they may name.
	slices.SortStableFunc(refs, func(a, b Ref) int { return -strings.Compare(string(a.Kind), string(b.Kind)) })
	var reply admin.DeleteReply
	var deleted, conflicts, waitFor []Ref
	seen := map[Ref]Version{}
	for _, ref := range refs {
		have, ok := v.x.Version(ref)
		if !ok || have.Deleted {
			reply.Missing = append(reply.Missing, admin.Ref{Kind: string(ref.Kind), Name: ref.Name})
			continue
		}
		seen[ref] = have
		err := v.c.Delete(ctx, ref, last[ref])
		switch {
		case errors.Is(err, ErrConflict):
			conflicts = append(conflicts, ref)
			if last[ref] == 0 || last[ref] == have.Revision {
				waitFor = append(waitFor, ref) // someone else wrote it: the index gets it too
			}
		case err != nil:
			v.catchUp(ctx, seen, deleted)
			return nil, fmt.Errorf("%w (deleted before it: %d)", err, len(deleted))
		default:
			deleted = append(deleted, ref)
			waitFor = append(waitFor, ref)
		}
	}
	v.catchUp(ctx, seen, waitFor)
	if len(conflicts) > 0 {
		return nil, admin.Errorf(admin.CodeConflict, "not deleted: %s changed since the revision given (%d others of the request were deleted); pollctl get shows the latest revision, delete again with it",
			names(conflicts), len(deleted))
	}
	reply.Deleted = refsOf(deleted, nil)
	return reply, nil
}

// budgetsInUse refuses to delete a budget that a connector kept names:
// that connector would draw from no budget.
func (v *verbs) budgetsInUse(refs []Ref) error {
	gone := map[Ref]bool{}
	budgets := map[string]bool{}
	for _, r := range refs {
		gone[r] = true
		if r.Kind == KindBudget {
			budgets[r.Name] = true
		}
	}
	if len(budgets) == 0 {
		return nil
	}
	users := map[string][]string{}
	for _, d := range v.x.Connectors() {
		if b := d.Budget.Name; budgets[b] && !gone[Connector(d.Name)] {
			users[b] = append(users[b], d.Name)
		}
	}
	for _, b := range slices.Sorted(maps.Keys(users)) {
		list := users[b]
		shown := list[:min(len(list), 5)]
		more := ""
		if len(list) > 5 {
			more = fmt.Sprintf(" and %d more", len(list)-5)
		}
		return admin.Errorf(admin.CodeBadRequest, "budget %s is named by %d connectors (%s%s): delete them, or change their budget, first; nothing was deleted",
			b, len(list), strings.Join(shown, ", "), more)
	}
	return nil
}

// syncWait bounds how long a verb waits for the index to read the bucket
// when the scheduler has just started.
const syncWait = 10 * time.Second

// synced waits for the index to hold the whole bucket.
func (v *verbs) synced(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, syncWait)
	defer cancel()
	select {
	case <-v.x.Synced():
		return nil
	case <-ctx.Done():
		return admin.Errorf(admin.CodeUnavailable, "the scheduler is still reading the catalog (%s): ask again in a moment", Bucket)
	}
}

// catchUp waits, up to catchUpWait, for the index to hold a revision of
// each ref newer than the one it held (seen): one this verb wrote, or
// that someone else wrote in its way.
func (v *verbs) catchUp(ctx context.Context, seen map[Ref]Version, refs []Ref) {
	ctx, cancel := context.WithTimeout(ctx, catchUpWait)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		refs = slices.DeleteFunc(refs, func(r Ref) bool {
			have, _ := v.x.Version(r)
			return have.Revision > seen[r].Revision
		})
		if len(refs) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return // the next request may find a conflict, and ask again
		case <-tick.C:
		}
	}
}

// recorded is the versions Plan read, to wait for newer ones after.
type recorded struct {
	vs   Versions
	seen map[Ref]Version
}

func (r *recorded) Version(ref Ref) (Version, bool) {
	have, ok := r.vs.Version(ref)
	r.seen[ref] = have
	return have, ok
}

func (r *recorded) All() iter.Seq2[Ref, Version] { return r.vs.All() }

// refused is a definition that fails its check: 400, every problem listed.
func refused(source string, err error) error {
	var problems *config.Problems
	if !errors.As(err, &problems) {
		return admin.Errorf(admin.CodeBadRequest, "%v", err)
	}
	e := admin.Errorf(admin.CodeBadRequest, "%s: %s; nothing was written", source, plural(len(problems.List), "problem"))
	if len(problems.List) == 1 {
		e.Message = fmt.Sprintf("%s: %v; nothing was written", source, problems.List[0])
	}
	for _, p := range problems.List {
		e.Problems = append(e.Problems, admin.Problem{Path: p.Path, Message: p.Message})
	}
	return e
}

// refOf reads a request's kind and name; the name must be a key token.
func refOf(kind, name string) (Ref, error) {
	switch Kind(kind) {
	case "":
		kind = string(KindConnector)
	case KindConnector, KindBudget:
	default:
		return Ref{}, admin.Errorf(admin.CodeBadRequest, "kind %q: give %q or %q", kind, KindConnector, KindBudget)
	}
	if name == "" || strings.ContainsAny(name, ".*> \t\r\n") {
		return Ref{}, admin.Errorf(admin.CodeBadRequest, "name %q: give a connector's or budget's name", name)
	}
	return Ref{Kind: Kind(kind), Name: name}, nil
}

func refsOf(refs []Ref, revisions map[Ref]uint64) []admin.Ref {
	if len(refs) == 0 {
		return nil
	}
	out := make([]admin.Ref, len(refs))
	for i, r := range refs {
		out[i] = admin.Ref{Kind: string(r.Kind), Name: r.Name, Revision: revisions[r]}
	}
	return out
}

func names(refs []Ref) string {
	shown := make([]string, 0, 5)
	for _, r := range refs[:min(len(refs), 5)] {
		shown = append(shown, r.String())
	}
	if len(refs) > 5 {
		return fmt.Sprintf("%s and %d more", strings.Join(shown, ", "), len(refs)-5)
	}
	return strings.Join(shown, ", ")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
