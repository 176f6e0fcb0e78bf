package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

// DefaultFile is read when CONNECTORS_FILE is not set.
const DefaultFile = "connectors.json"

// schemaKey may name the file's JSON Schema (Schema) for editors; the
// loader only checks that it is a string.
const schemaKey = "$schema"

// EnvSource describes a connector defined by CONNECTOR_* variables.
const EnvSource = "environment (CONNECTOR_*)"

// Connector is one validated connector with defaults applied.
type Connector struct {
	// Name identifies the connector in subjects, keys and logs; it is a NATS
	// subject token: lowercase letters, digits, "-" and "_", at most 64.
	Name string
	// Type is a registered connector type, such as "weather-noaa".
	Type string
	// Enabled is false for a connector kept in the file but not polled.
	// Default true.
	Enabled bool
	// Interval is the time between polls: whole seconds, at least 1s.
	// Default 60s. An adaptive connector starts from it.
	Interval time.Duration
	// Adaptive bounds the connector's effective interval when it adapts to
	// how often the upstream changes; the zero Adaptive when it does not.
	Adaptive Adaptive
	// Jitter is accepted for older configs and ignored: every connector's
	// ticks keep a fixed phase within its interval, derived from its name,
	// which spreads connectors evenly. Shorter than Interval.
	Jitter time.Duration
	// Timeout bounds one poll. Default the shorter of 10s and Interval/2;
	// shorter than Interval, so a poll ends before the next is due.
	Timeout time.Duration
	// Retries of a failed poll within one tick.
	Retries Retries
	// LeaseTTL is how long a worker's claim on the connector lives without
	// renewal: the worker renews it four times per TTL while it polls, and
	// a worker that dies frees the connector within it. Default 2s, at
	// least 1s.
	LeaseTTL time.Duration
	// SeenCap is how many items the connector remembers (their versions
	// and change sequences), 1 to 10,000,000; default 100,000, enough for
	// a catalogue-sized listing (about 90 bytes of Redis per item). Past it
	// the items seen longest ago, and not in the current answer, are
	// forgotten, with a warning; an answer with more new items than that
	// leaves the rest unpublished, as failed items, until there is room.
	SeenCap int
	// Labels are free-form key/values for your own bookkeeping; pollgrid
	// validates and keeps them but copies them nowhere (metric labels per
	// connector would not scale, and signals carry their connector name).
	Labels map[string]string
	// Config is the type-specific object with ${VAR} already resolved;
	// "{}" when absent.
	Config json.RawMessage
	// Budget is the rate-limit budget the connector draws from before each
	// upstream request (its "budget" names one of the file's "budgets");
	// the zero Budget (no Name) when it has none.
	Budget Budget
}

// Adaptive is a connector's opt-in "adaptive": {"min", "max"}. Its workers
// keep an effective interval between Min and Max, starting from Interval:
// Min after a poll that found changes, half as long again (up to Max) after
// one that found none, and never below the connector's fair share of its
// budget (docs/connector-framework.md, "Adaptive intervals").
type Adaptive struct {
	// Min and Max are whole seconds, 1s <= Min < Max, and Min <= Interval
	// <= Max; both zero when the connector's interval is fixed.
	Min, Max time.Duration
}

// On reports whether the connector's interval adapts.
func (a Adaptive) On() bool { return a.Max > 0 }

// String writes the bounds as the views show them: "10s..10m".
func (a Adaptive) String() string {
	return shortDuration(a.Min) + ".." + shortDuration(a.Max)
}

// ScheduledInterval is the interval c's ticks fire at when its effective
// interval is e (from its state; 0 before its first poll): Interval for a
// fixed interval, else e, or Interval when 0, in whole seconds (schedules
// fire on whole seconds) within the adaptive bounds.
func (c Connector) ScheduledInterval(e time.Duration) time.Duration {
	if !c.Adaptive.On() {
		return c.Interval
	}
	if e <= 0 {
		e = c.Interval
	}
	return c.Adaptive.Clamp(e.Round(time.Second), 0)
}

// DurationText writes a duration as a config file would: "1m", not "1m0s".
func DurationText(d time.Duration) string { return shortDuration(d) }

// Clamp bounds an effective interval d: never below the floor (a budget's
// fair share, 0 for none) nor outside [Min, Max]; Max wins over a floor
// above it (the budget then defers the polls it cannot serve).
func (a Adaptive) Clamp(d, floor time.Duration) time.Duration {
	lo := min(max(a.Min, floor), a.Max)
	return min(max(d, lo), a.Max)
}

// Retries says how a failed poll is retried within one tick.
type Retries struct {
	// Max is the number of retries after the first attempt. Default 2, 0..10.
	Max int
	// Backoff is the wait before the first retry. Default 1s, at most Interval.
	Backoff time.Duration
}

// Config is a validated set of connectors.
type Config struct {
	// Connectors in file order.
	Connectors []Connector
	// Budgets are the rate-limit budgets by name, with their sharers
	// counted (Budget.Connectors).
	Budgets map[string]Budget
	// Warnings are what is valid but likely not meant (a budget smaller
	// than its connectors ask for); a service logs them at load.
	Warnings []Problem
	secrets  []string
}

// Enabled returns the connectors to poll.
func (c *Config) Enabled() []Connector {
	var enabled []Connector
	for _, conn := range c.Connectors {
		if conn.Enabled {
			enabled = append(enabled, conn)
		}
	}
	return enabled
}

// Lookup returns the connector called name.
func (c *Config) Lookup(name string) (Connector, bool) {
	for _, conn := range c.Connectors {
		if conn.Name == name {
			return conn, true
		}
	}
	return Connector{}, false
}

// Secrets returns every non-empty value resolved from ${VAR}, for a
// redact.Redactor.
func (c *Config) Secrets() []string {
	return slices.Clone(c.secrets)
}

// TypeChecker knows the registered connector types. *connector.Registry
// implements it.
type TypeChecker interface {
	Known(typeName string) bool
	// Types lists the registered types, sorted.
	Types() []string
	// Validate decodes and validates a type-specific config, without I/O.
	Validate(typeName string, raw json.RawMessage) error
}

// Env looks up an environment variable: os.LookupEnv in production,
// MapEnv in tests. A nil Env has no variables.
type Env func(key string) (string, bool)

// MapEnv returns an Env backed by m.
func MapEnv(m map[string]string) Env {
	return func(key string) (string, bool) {
		v, ok := m[key]
		return v, ok
	}
}

func (e Env) lookup(key string) (string, bool) {
	if e == nil {
		return "", false
	}
	return e(key)
}

// Parse validates a connectors file's contents, resolving ${VAR} from env.
// types must not be nil. The error, if any, is a *Problems listing
// everything wrong.
// The Limits come from env (LimitsFrom).
func Parse(data []byte, env Env, types TypeChecker) (*Config, error) {
	limits, err := LimitsFrom(env)
	if err != nil {
		return nil, err
	}
	cfg, _, err := parse(DefaultFile, data, env, types, limits, nil, false)
	return cfg, err
}

// LoadFile reads and parses the connectors file at path. A file over the
// size cap (Limits) is refused before it is read.
func LoadFile(path string, env Env, types TypeChecker) (*Config, error) {
	limits, err := LimitsFrom(env)
	if err != nil {
		return nil, err
	}
	data, err := readCapped(path, limits.MaxBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("connectors file %s: %w (create it, set CONNECTORS_FILE to its path, "+
			"or define one connector with CONNECTOR_TYPE, CONNECTOR_NAME and CONNECTOR_CONFIG)", path, fs.ErrNotExist)
	}
	if size, over := errors.AsType[tooLarge](err); over {
		problems := &Problems{Source: path}
		limits.checkSize(int64(size), "the file", problems, "")
		return nil, problems.err(nil)
	}
	if err != nil {
		return nil, fmt.Errorf("read connectors file: %w", err)
	}
	cfg, _, err := parse(path, data, env, types, limits, nil, false)
	return cfg, err
}

// tooLarge is a file over the size cap: its size, or the cap plus one
// when it grew while read (a pipe, a file being written).
type tooLarge int64

func (e tooLarge) Error() string { return fmt.Sprintf("%d bytes", int64(e)) }

// readCapped reads at most max bytes of path, without reading a file that
// says it is larger.
func readCapped(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Mode().IsRegular() && info.Size() > max {
		return nil, tooLarge(info.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, tooLarge(len(data))
	}
	return data, nil
}

// Load reads the config from where the environment says:
//
//   - CONNECTOR_TYPE set: one connector from the CONNECTOR_* variables,
//     for development;
//   - otherwise the file at CONNECTORS_FILE (default connectors.json),
//     narrowed to the connector called CONNECTOR_NAME when that is set. A
//     connector asked for by name runs even if the file disables it.
//
// source describes what was loaded, for the start-up log line.
func Load(env Env, types TypeChecker) (cfg *Config, source string, err error) {
	if _, ok := env.lookup("CONNECTOR_TYPE"); ok {
		limits, err := LimitsFrom(env)
		if err != nil {
			return nil, EnvSource, err
		}
		cfg, err := fromEnv(env, types, limits)
		return cfg, EnvSource, err
	}
	path := DefaultFile
	if p, ok := env.lookup("CONNECTORS_FILE"); ok && p != "" {
		path = p
	}
	cfg, err = LoadFile(path, env, types)
	if err != nil {
		return nil, path, err
	}
	name, _ := env.lookup("CONNECTOR_NAME")
	if name == "" {
		return cfg, fmt.Sprintf("%s (%s)", path, plural(len(cfg.Connectors), "connector")), nil
	}
	conn, found := cfg.Lookup(name)
	if !found {
		names := make([]string, len(cfg.Connectors))
		for i, c := range cfg.Connectors {
			names[i] = c.Name
		}
		problems := &Problems{Source: path}
		problems.add("CONNECTOR_NAME", "no connector named %q in %s (available: %s)", name, path, strings.Join(names, ", "))
		return nil, path, problems.err(cfg.secrets)
	}
	conn.Enabled = true
	total := len(cfg.Connectors)
	cfg.Connectors = []Connector{conn}
	return cfg, fmt.Sprintf("%s (connector %q of %d)", path, name, total), nil
}

// parse checks a whole file. Its top-level fields come back too, for
// ParseDefinitions, which stores the entries as written.
// known, if not nil, says which connectors were checked before, unchanged
// since (ParseDefinitionsKnown). lean keeps of each connector only what
// spans the file (spanning), dropping the rest as soon as it is checked.
func parse(source string, data []byte, env Env, types TypeChecker, limits Limits, known Known, lean bool) (*Config, map[string]json.RawMessage, error) {
	problems := &Problems{Source: source}
	if len(bytes.TrimSpace(data)) == 0 {
		problems.List = append(problems.List, Problem{Message: source + ` is empty (write {"connectors": [...]})`})
		return nil, nil, problems.err(nil)
	}
	if !limits.checkSize(int64(len(data)), "the file", problems, "") || !limits.checkDepth(data, problems, "") {
		return nil, nil, problems.err(nil)
	}
	if !checkSyntax(data, "", problems) {
		return nil, nil, problems.err(nil)
	}
	top, isObject := objectFields(data)
	if !isObject {
		var tree any
		_ = json.Unmarshal(data, &tree)
		problems.add("", `must be an object like {"connectors": [...]}, not %s`, connector.JSONKind(tree))
		return nil, nil, problems.err(nil)
	}
	for _, key := range sortedKeys(top) {
		switch key {
		case "connectors", "budgets":
		case schemaKey:
			var ref any
			dec := json.NewDecoder(bytes.NewReader(top[key]))
			dec.UseNumber()
			_ = dec.Decode(&ref) // cannot fail: the file is valid JSON
			if _, ok := ref.(string); !ok {
				problems.add(key, "must be a string: the URL or path of the JSON Schema, for editors (pollctl schema prints it), not %s", connector.JSONKind(ref))
			}
		default:
			problems.add(key, `unknown field (the file holds only "connectors", "budgets", and "$schema" for editors)`)
		}
	}
	cfg := &Config{Budgets: budgets(top["budgets"], problems)}
	secrets := map[string]bool{}
	list := connectors(top["connectors"], problems, func(i int, item json.RawMessage) checked {
		at := func(field string) string { return join(fmt.Sprintf("connectors[%d]", i), field) }
		c, ok := known.connector(item, at)
		if !ok {
			c = check(env, types, source, item, at)
		}
		if lean {
			c.conn = c.conn.spanning()
		}
		return c
	})
	linkBudgets(list, cfg.Budgets, problems)
	list.merge(cfg, problems, secrets)
	cfg.Warnings = budgetWarnings(cfg.Budgets, cfg.Connectors)
	cfg.secrets = sortedKeys(secrets)
	if err := problems.err(cfg.secrets); err != nil {
		return nil, nil, err
	}
	return cfg, top, nil
}

// spanning is what of c the checks across a file read (names used twice,
// budgets named, their sharers and warnings): what a known connector holds
// (Known.connector).
func (c Connector) spanning() Connector {
	return Connector{Name: c.Name, Type: c.Type, Enabled: c.Enabled, Interval: c.Interval, Adaptive: c.Adaptive, Budget: c.Budget}
}

// checked is one connector checked alone (check), to merge in file order.
type checked struct {
	conn Connector
	checkNotes
}

// checkNotes are what a check says of a connector besides the connector.
type checkNotes struct {
	ok       bool
	problems []Problem
	secrets  map[string]bool
	// name, shown and nameAt are the validator's (a valid name, as messages
	// show it, and where in problems a name problem goes); at names fields.
	name, shown string
	nameAt      int
	at          func(field string) string
}

// check decodes and checks one connector of a file.
func check(env Env, types TypeChecker, source string, raw json.RawMessage, at func(string) string) checked {
	item := readTree(raw) // raw passed checkSyntax
	problems := &Problems{Source: source}
	v := newValidator(env, types, problems)
	conn, ok := v.connector(item, at)
	return checked{conn: conn, checkNotes: checkNotes{ok: ok, problems: problems.List, secrets: v.secrets,
		name: v.connName, shown: v.shownName, nameAt: v.nameAt, at: at}}
}

// checkedList is a file's connectors checked, in file order: the
// connectors in conns, what their checks say at the same index in notes.
// merge makes the Config's connectors of conns itself: a file of a
// million connectors is held once, not once here and again in the Config.
type checkedList struct {
	conns []Connector
	notes []checkNotes
}

// merge adds the connectors and their problems in file order, and reports
// every name used twice where its second connector's name problem goes.
// The Config's connectors are list.conns after (cfg has none before).
func (list checkedList) merge(cfg *Config, problems *Problems, secrets map[string]bool) {
	names := make(map[string]int, len(list.notes)) // name -> index of the first connector using it
	kept := list.conns[:0]                         // each is kept at its index or before
	for i, c := range list.notes {
		if c.name != "" {
			if first, used := names[c.name]; used {
				dup := Problem{Path: c.at("name"), Message: fmt.Sprintf("%s is already used by %s (names must be unique)", c.shown, list.notes[first].at(""))}
				c.problems = slices.Insert(c.problems, c.nameAt, dup)
				c.ok = false
			} else {
				names[c.name] = i
			}
		}
		problems.List = append(problems.List, c.problems...)
		for s := range c.secrets {
			secrets[s] = true
		}
		if c.ok {
			kept = append(kept, list.conns[i])
		}
	}
	clear(list.conns[len(kept):]) // the copies past the kept ones, of connectors that had problems
	cfg.Connectors = kept
}

// connectors splits a file's list of connectors and checks them with
// check, on every core: a config of 100,000 connectors loads in about the
// time of the largest share, and never becomes one tree in memory.
func connectors(raw json.RawMessage, problems *Problems, check func(i int, item json.RawMessage) checked) checkedList {
	const example = `{"connectors": [{"name": "...", "type": "...", "config": {...}}]}`
	items, isList := listItems(raw)
	if !isList {
		var value any
		_ = json.Unmarshal(raw, &value)
		if value == nil {
			problems.add("connectors", "missing (write %s)", example)
		} else {
			problems.add("connectors", "must be a list of connectors, not %s (write %s)", connector.JSONKind(value), example)
		}
		return checkedList{}
	}
	if len(items) == 0 {
		problems.add("connectors", "no connectors (add at least one: %s)", example)
		return checkedList{}
	}
	list := checkedList{conns: make([]Connector, len(items)), notes: make([]checkNotes, len(items))}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(items)) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(items); i = int(next.Add(1)) - 1 {
				c := check(i, items[i])
				list.conns[i], list.notes[i] = c.conn, c.checkNotes
				items[i] = nil
			}
		})
	}
	wg.Wait()
	return list
}

// fromEnv builds one connector from CONNECTOR_* variables, checked by the
// same rules as a file; an empty variable counts as unset.
func fromEnv(env Env, types TypeChecker, limits Limits) (*Config, error) {
	problems := &Problems{Source: EnvSource}
	obj := envEntry(env, limits, problems)
	v := newValidator(env, types, problems)
	conn, _ := v.connector(obj, envPath)
	cfg := &Config{Connectors: []Connector{conn}, secrets: sortedKeys(v.secrets)}
	if err := problems.err(cfg.secrets); err != nil {
		return nil, err
	}
	return cfg, nil
}

// envEntry is the connector object the CONNECTOR_* variables write.
func envEntry(env Env, limits Limits, problems *Problems) map[string]any {
	obj := map[string]any{}
	// Each variable named in full, so that a search finds where it is read
	// (and test/deploy's check of the docs sees it). jitter, accepted in a
	// file for older configs and ignored, has no variable.
	for _, v := range []struct{ variable, field string }{
		{"CONNECTOR_NAME", "name"}, {"CONNECTOR_TYPE", "type"}, {"CONNECTOR_INTERVAL", "interval"},
		{"CONNECTOR_TIMEOUT", "timeout"}, {"CONNECTOR_LEASE_TTL", "lease_ttl"},
	} {
		if s, _ := env.lookup(v.variable); s != "" {
			obj[v.field] = s
		}
	}
	if s, _ := env.lookup("CONNECTOR_RETRIES"); s != "" {
		var count any = s
		if json.Valid([]byte(s)) {
			count = json.Number(s) // a number, or an error saying it is not one
		}
		obj["retries"] = map[string]any{"max": count}
	}
	if s, _ := env.lookup("CONNECTOR_CONFIG"); s != "" {
		obj["config"] = reported{} // unless it decodes below
		if limits.checkSize(int64(len(s)), "the value", problems, "CONNECTOR_CONFIG") && limits.checkDepth([]byte(s), problems, "CONNECTOR_CONFIG") {
			if tree, ok := decodeJSON([]byte(s), "CONNECTOR_CONFIG", problems); ok {
				obj["config"] = tree
			}
		}
	}
	return obj
}

// envPath names the variable a connector field comes from in EnvSource:
// "interval" -> CONNECTOR_INTERVAL, "config.token" -> CONNECTOR_CONFIG.token.
func envPath(field string) string {
	switch field {
	case "":
		return "CONNECTOR_*"
	case "retries", "retries.max":
		return "CONNECTOR_RETRIES"
	}
	name, rest := field, ""
	if i := strings.IndexAny(field, ".["); i >= 0 {
		name, rest = field[:i], field[i:]
	}
	return "CONNECTOR_" + strings.ToUpper(name) + rest
}
