package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/redact"
)

// A worker never holds the whole set of connectors: it reads a
// connector's definition from the catalog when a tick names one it does
// not hold, or one planned from a newer revision than the one it holds,
// and keeps the last DefinitionsCache it used. Its memory so follows the
// connectors it polls, not the connectors defined.

// DefinitionReader reads one definition from the catalog: *catalog.Catalog.
type DefinitionReader interface {
	Get(ctx context.Context, ref catalog.Ref) (catalog.Entry, error)
}

const (
	// DefaultDefinitionsCache is how many connectors a worker keeps read
	// and built (WORKER_DEFINITIONS_CACHE).
	DefaultDefinitionsCache = 4096
	// budgetsCached is how many budget definitions a worker keeps, and
	// budgetTTL for how long: budgets are few, and a changed budget
	// reaches every worker within budgetTTL (their ticks say no revision).
	budgetsCached = 1024
	budgetTTL     = 5 * time.Second
	// goneLogged is how many deleted connectors a worker remembers having
	// logged, so that their late ticks are logged once each.
	goneLogged = 1024
)

// errDefinition marks a definition this worker cannot poll: its check
// fails, or a ${VAR} it names is not set in this worker's environment.
var errDefinition = errors.New("definition cannot be polled")

// definitionError is a definition's problems on one line, as a report and
// a log show them.
type definitionError struct {
	msg      string
	problems error
}

func (e *definitionError) Error() string { return e.msg }

func (e *definitionError) Unwrap() []error { return []error{errDefinition, e.problems} }

// definitions reads connector and budget definitions from the catalog and
// keeps the last ones used.
type definitions struct {
	catalog  DefinitionReader
	env      config.Env
	types    config.TypeChecker
	redactor *redact.Redactor
	// declare is told each budget read (budget.Limiter.Declare).
	declare func(budget string)

	mu        sync.Mutex // orders a read's result against a newer one's
	instances *lru.Cache[string, *instance]
	budgets   *expirable.LRU[string, budgetDefinition]
	gone      *lru.Cache[string, struct{}]
}

// budgetDefinition is a budget as read: its definition, or why a
// connector naming it cannot poll (it is not in the catalog, or its check
// fails).
type budgetDefinition struct {
	budget config.Budget
	err    error
}

func newDefinitions(cat DefinitionReader, env config.Env, types config.TypeChecker, redactor *redact.Redactor, size int) (*definitions, error) {
	instances, err := lru.New[string, *instance](size)
	if err != nil {
		return nil, fmt.Errorf("definitions cache of %d: %w", size, err)
	}
	gone, _ := lru.New[string, struct{}](goneLogged) // cannot fail: the size is positive
	return &definitions{
		catalog: cat, env: env, types: types, redactor: redactor,
		instances: instances,
		budgets:   expirable.NewLRU[string, budgetDefinition](budgetsCached, nil, budgetTTL),
		gone:      gone,
	}, nil
}

// connector returns the definition of the connector called name: the one
// held, unless it is older than revision (what the tick was planned from;
// 0 when unknown) or latest is set (an admin verb, which has no tick), in
// which case it reads the catalog's. It is catalog.ErrNotFound when the
// catalog no longer holds the connector, another error when the catalog
// cannot be read; a definition this worker cannot poll is an instance
// whose err says why.
func (d *definitions) connector(ctx context.Context, name string, revision uint64, latest bool) (*instance, error) {
	held, ok := d.instances.Get(name)
	if ok && !latest && revision <= held.revision {
		return held, nil
	}
	entry, err := d.catalog.Get(ctx, catalog.Connector(name))
	if errors.Is(err, catalog.ErrNotFound) {
		d.instances.Remove(name)
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	d.gone.Remove(name)
	in := d.parse(name, entry, held)
	d.mu.Lock()
	defer d.mu.Unlock()
	if newer, ok := d.instances.Peek(name); ok && newer.revision > in.revision {
		return newer, nil // read meanwhile by another poll, and newer
	}
	d.instances.Add(name, in)
	return in, nil
}

// parse checks a connector's definition and resolves its ${VAR} from this
// worker's environment; the values resolved join the redactor before
// anything can print them. The connector built for prev is kept when its
// type and config did not change.
func (d *definitions) parse(name string, e catalog.Entry, prev *instance) *instance {
	var secrets []string
	env := func(key string) (string, bool) {
		if d.env == nil {
			return "", false
		}
		v, ok := d.env(key)
		if ok && v != "" {
			secrets = append(secrets, v)
		}
		return v, ok
	}
	source := fmt.Sprintf("%s (catalog revision %d)", name, e.Revision)
	c, err := config.ParseConnector(source, e.Value, env, d.types, nil)
	d.redactor.Add(secrets...)
	if err == nil && c.Name != name {
		err = fmt.Errorf("its definition is named %q: write it under connectors.%s, or apply it again (pollctl apply)", c.Name, c.Name)
	}
	if err != nil {
		// The type as written, if it is one, labels the failed poll's
		// report and metrics (a tick says it too; a trigger does not).
		var written struct{ Type string }
		if json.Unmarshal(e.Value, &written) != nil || !d.types.Known(written.Type) {
			written.Type = "" // no label of a type that is not one
		}
		return &instance{cfg: config.Connector{Name: name, Type: written.Type}, revision: e.Revision,
			err: definitionProblem("connector "+source+" cannot be polled by this worker", err, d.redactor)}
	}
	in := &instance{cfg: c, revision: e.Revision, built: &built{}}
	if prev != nil && prev.err == nil && sameConnector(prev.cfg, c) {
		in.built = prev.built
	}
	return in
}

// definitionProblem writes a definition's problems on one line after
// what, with what to do: a ${VAR} resolves from each worker's own
// environment.
func definitionProblem(what string, err error, redactor *redact.Redactor) error {
	var problems *config.Problems
	var list []string
	if errors.As(err, &problems) {
		for _, p := range problems.List {
			list = append(list, p.String())
		}
	} else {
		list = []string{strings.ReplaceAll(err.Error(), "\n", " ")}
	}
	fix := "fix the definition and pollctl apply it"
	if strings.Contains(strings.Join(list, "\n"), "environment variable") {
		fix = "a worker resolves ${VAR} from its own environment: set it in every worker's, or " + fix
	}
	msg := fmt.Sprintf("%s: %s (%s)", what, strings.Join(list, "; "), fix)
	return &definitionError{msg: redactor.String(msg), problems: err}
}

// budget returns the budget called name, read at most budgetTTL ago. Its
// err is set when the connector naming it cannot poll; the error returned
// is a catalog that cannot be read.
func (d *definitions) budget(ctx context.Context, name string) (budgetDefinition, error) {
	if b, ok := d.budgets.Get(name); ok {
		return b, nil
	}
	entry, err := d.catalog.Get(ctx, catalog.Budget(name))
	var b budgetDefinition
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		b.err = &definitionError{msg: fmt.Sprintf("budget %s is not in the catalog (add it to \"budgets\" and pollctl apply, "+
			"or remove the connector's \"budget\")", name), problems: err}
	case err != nil:
		return b, err
	default:
		source := fmt.Sprintf("budget %s (catalog revision %d)", name, entry.Revision)
		if b.budget, err = config.ParseBudget(source, name, entry.Value); err != nil {
			b.err = definitionProblem(source+" is invalid", err, d.redactor)
		} else if d.declare != nil {
			d.declare(name)
		}
	}
	d.budgets.Add(name, b)
	return b, nil
}

// firstGone says whether a deleted connector's dropped tick is the
// first this worker meets since it last read the connector (to log it
// once).
func (d *definitions) firstGone(name string) bool {
	seen, _ := d.gone.ContainsOrAdd(name, struct{}{})
	return !seen
}
