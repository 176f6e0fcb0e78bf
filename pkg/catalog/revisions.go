package catalog

// The verbs of one definition: get, history and rollback.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/config"
)

// requestedRef reads the definition a get or history request names.
func requestedRef(data []byte) (Ref, error) {
	var req admin.DefinitionRequest
	if err := admin.Decode(data, &req); err != nil {
		return Ref{}, err
	}
	return refOf(req.Kind, req.Name)
}

// get returns a definition's latest revision, as written.
func (v *verbs) get(ctx context.Context, data []byte) (any, error) {
	ref, err := requestedRef(data)
	if err != nil {
		return nil, err
	}
	e, err := v.c.Get(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		return nil, v.notFound(ref)
	}
	if err != nil {
		return nil, err
	}
	return admin.Definition{Kind: string(ref.Kind), Name: ref.Name, Revision: revisionOf(e)}, nil
}

// history returns every revision the bucket keeps of a definition.
func (v *verbs) history(ctx context.Context, data []byte) (any, error) {
	ref, err := requestedRef(data)
	if err != nil {
		return nil, err
	}
	list, err := v.c.History(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		return nil, v.notFound(ref)
	}
	if err != nil {
		return nil, err
	}
	reply := admin.HistoryReply{Kind: string(ref.Kind), Name: ref.Name, Revisions: make([]admin.Revision, len(list))}
	for i, e := range list {
		reply.Revisions[i] = revisionOf(e)
	}
	return reply, nil
}

// rollback writes an older revision's value as the definition's next
// revision, after checking it again against the catalog as it is now
// (a budget it names must still be defined), on condition that the latest
// revision is still the one read.
func (v *verbs) rollback(ctx context.Context, data []byte) (any, error) {
	var req admin.RollbackRequest
	if err := admin.Decode(data, &req); err != nil {
		return nil, err
	}
	ref, err := refOf(req.Kind, req.Name)
	if err != nil {
		return nil, err
	}
	list, err := v.c.History(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		return nil, v.notFound(ref)
	}
	if err != nil {
		return nil, err
	}
	latest := list[len(list)-1]
	target, err := rollbackTarget(ref, list, req.Revision)
	if err != nil {
		return nil, err
	}
	reply := admin.RollbackReply{Kind: string(ref.Kind), Name: ref.Name, Restored: target.Revision, Revision: latest.Revision}
	if !latest.Deleted && SumOf(latest.Value) == SumOf(target.Value) {
		reply.Unchanged = true
		return reply, nil
	}
	if err := v.synced(ctx); err != nil {
		return nil, err
	}
	source := fmt.Sprintf("%s revision %d", ref, target.Revision)
	if err := v.check(source, ref, target.Value); err != nil {
		return nil, refused(source, err)
	}
	rev, err := v.c.Put(ctx, ref, target.Value, latest.Revision)
	if errors.Is(err, ErrConflict) {
		return nil, admin.Errorf(admin.CodeConflict, "%v", err)
	}
	if err != nil {
		return nil, err
	}
	v.catchUp(ctx, map[Ref]Version{ref: {Revision: latest.Revision}}, []Ref{ref})
	reply.Revision = rev
	return reply, nil
}

// rollbackTarget is the revision of list to write again: revision, or (0)
// the latest value before the latest revision (when that is a deletion,
// the value it deleted).
func rollbackTarget(ref Ref, list []Entry, revision uint64) (Entry, error) {
	if revision == 0 {
		for i := len(list) - 2; i >= 0; i-- {
			if !list[i].Deleted {
				return list[i], nil
			}
		}
		return Entry{}, admin.Errorf(admin.CodeNotFound, "%s has no earlier value kept to roll back to (pollctl history %s lists its revisions)", ref, ref.Name)
	}
	i := slices.IndexFunc(list, func(e Entry) bool { return e.Revision == revision })
	if i < 0 {
		kept := make([]string, len(list))
		for i, e := range list {
			kept[i] = fmt.Sprint(e.Revision)
		}
		return Entry{}, admin.Errorf(admin.CodeNotFound, "%s has no revision %d kept (kept: %s; the catalog keeps the last %d of each)",
			ref, revision, strings.Join(kept, ", "), history)
	}
	if list[i].Deleted {
		return Entry{}, admin.Errorf(admin.CodeBadRequest, "revision %d of %s is its deletion, not a value to restore (pollctl delete does that)", revision, ref)
	}
	return list[i], nil
}

// check checks one definition as the index does, with the budgets the
// catalog defines now.
func (v *verbs) check(source string, ref Ref, value []byte) error {
	if ref.Kind == KindBudget {
		_, err := config.ParseBudget(source, ref.Name, value)
		return err
	}
	c, err := config.ParseConnector(source, value, config.Unresolved, v.types, v.x.Budgets())
	if err == nil && c.Name != ref.Name {
		err = fmt.Errorf("%s: its name is %q, not %q", source, c.Name, ref.Name)
	}
	return err
}

// notFound says a definition is not in the catalog, and where it might be.
func (v *verbs) notFound(ref Ref) error {
	what := "connector"
	other, otherFlag := Budget(ref.Name), " --budget"
	if ref.Kind == KindBudget {
		what, other, otherFlag = "budget", Connector(ref.Name), ""
	}
	if have, ok := v.x.Version(ref); ok && have.Deleted {
		return admin.Errorf(admin.CodeNotFound, "the %s %s was deleted (revision %d): pollctl history %s shows it, pollctl rollback %s restores it",
			what, ref.Name, have.Revision, ref.Name, ref.Name)
	}
	hint := "pollctl apply -f FILE defines it"
	if have, ok := v.x.Version(other); ok && !have.Deleted {
		hint = fmt.Sprintf("a %s of that name exists: pollctl get%s %s", strings.TrimSuffix(string(other.Kind), "s"), otherFlag, ref.Name)
	}
	return admin.Errorf(admin.CodeNotFound, "no %s named %q in the catalog (%s)", what, ref.Name, hint)
}

func revisionOf(e Entry) admin.Revision {
	r := admin.Revision{Revision: e.Revision, Created: e.Created, Operation: admin.OperationPut, Value: string(e.Value)}
	if e.Deleted {
		r.Operation = admin.OperationDelete
	}
	return r
}
