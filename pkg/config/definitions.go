package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Definition is one connector or budget as its user wrote it: its ${VAR}
// references unresolved, its JSON compacted. The catalog (NATS KV) stores
// definitions; a worker resolves the references from its own environment
// when it polls (ParseConnector).
type Definition struct {
	Name  string
	Value json.RawMessage
}

// Definitions is a whole connectors file, checked as written.
type Definitions struct {
	Source string
	// Connectors in file order; Budgets sorted by name.
	Connectors []Definition
	Budgets    []Definition
	// Checked are the connectors as checked, ${VAR} unresolved, in the
	// order of Connectors (none from ParseDefinitionsKnown).
	Checked []Connector
	// Enabled counts the connectors to poll.
	Enabled int
	// Warnings are what is valid but likely not meant (Config.Warnings).
	Warnings []Problem
}

// Unresolved is the environment definitions are checked in: every ${VAR}
// stands for itself, so that a definition is checked as written, the same
// wherever it is checked (pollctl, the admin service, a process applying
// its file), and no value of the checker's environment enters it. A field
// whose check refuses the literal "${VAR}" (a URL, a duration) is better
// written without a variable.
func Unresolved(key string) (string, bool) { return "${" + key + "}", true }

// DefinitionLimits are the limits of a file pollctl applies: its size is
// not capped (the catalog holds one definition per key, and no process
// holds the whole set), each definition's depth is. A process that applies
// its own CONNECTORS_FILE keeps CONFIG_MAX_BYTES (LoadDefinitions): a file
// there must never take a service down.
func DefinitionLimits() Limits {
	return Limits{MaxBytes: 1 << 40, MaxDepth: DefaultMaxDepth}
}

// ParseDefinitions checks a whole connectors file as written (Unresolved)
// and returns its entries for the catalog. The error, if any, is a
// *Problems listing everything wrong; nothing is returned then.
func ParseDefinitions(source string, data []byte, types TypeChecker) (*Definitions, error) {
	return parseKnown(source, data, types, DefinitionLimits(), nil, false)
}

// Known says whether a connector, by its name and its definition as
// written (compacted), was checked before and is unchanged since: the
// catalog holds it so. pollctl apply asks the catalog's digests.
type Known func(name string, written []byte) bool

// ParseDefinitionsKnown is ParseDefinitions that does not check again the
// connectors known says are unchanged: it reads their name, type, enabled,
// interval and budget, for what spans the file (names used twice, budgets
// named, their sharers), and keeps the rest as written. A file applied
// again then costs a digest per connector, not a check.
//
// It is what a client that sends the definitions as written (pollctl
// apply) checks a file with: it returns no Checked, and keeps no more of a
// connector than what spans the file once it is checked, and a compact
// connector's Value is data's own bytes, not a copy: a file of a million
// connectors is checked in little more than the memory of the file.
func ParseDefinitionsKnown(source string, data []byte, types TypeChecker, known Known) (*Definitions, error) {
	return parseKnown(source, data, types, DefinitionLimits(), known, true)
}

// Names lists the names of a file's connectors, in file order, and of its
// budgets, at a glance: what to ask the catalog before
// ParseDefinitionsKnown. It reads the bytes once and does not check them
// (ParseDefinitionsKnown does): of a file that is not JSON it returns
// some names or none.
func Names(data []byte) (connectors, budgets []string) {
	top, _ := objectFields(data)
	items, _ := listItems(top["connectors"])
	connectors = make([]string, 0, len(items))
	for _, item := range items {
		if name := NameOf(item); name != "" {
			connectors = append(connectors, name)
		}
	}
	eachField(top["budgets"], func(key []byte, _ json.RawMessage) { budgets = append(budgets, string(key)) })
	return connectors, budgets
}

// NameOf reads the "name" of a connector's definition at a glance,
// unchecked: "" when it has none that is a string.
func NameOf(value []byte) string {
	var raw json.RawMessage
	eachField(value, func(key []byte, value json.RawMessage) {
		if string(key) == "name" {
			raw = value // the last, as json.Unmarshal keeps
		}
	})
	name, _, _ := stringField(raw)
	return name
}

// Compacted is a definition of valid JSON as the catalog stores it
// (Definition.Value): without the spaces between its tokens, as
// json.Compact writes it. It is value itself when that is compact already:
// to read (a digest), not to keep.
func Compacted(value []byte) []byte { return compacted(value) }

// parseKnown checks a file of definitions within limits; lean is what
// ParseDefinitionsKnown says it keeps.
func parseKnown(source string, data []byte, types TypeChecker, limits Limits, known Known, lean bool) (*Definitions, error) {
	cfg, top, err := parse(source, data, Unresolved, types, limits, known, lean)
	if err != nil {
		return nil, err
	}
	defs := &Definitions{Source: source, Warnings: cfg.Warnings}
	if !lean {
		defs.Checked = cfg.Connectors
	}
	for _, c := range cfg.Connectors {
		if c.Enabled {
			defs.Enabled++
		}
	}
	items, err := splitList(top["connectors"])
	if err != nil || len(items) != len(cfg.Connectors) {
		return nil, fmt.Errorf("%s: read the connectors again: %v", source, err)
	}
	defs.Connectors = make([]Definition, len(items))
	for i, item := range items {
		value := json.RawMessage(item)
		if !lean || !isCompact(item) {
			value = compact(item)
		}
		defs.Connectors[i] = Definition{Name: cfg.Connectors[i].Name, Value: value}
	}
	if raw := top["budgets"]; raw != nil {
		var budgets map[string]json.RawMessage
		if err := json.Unmarshal(raw, &budgets); err != nil {
			return nil, fmt.Errorf("%s: read the budgets again: %w", source, err)
		}
		for _, name := range slices.Sorted(maps.Keys(budgets)) {
			defs.Budgets = append(defs.Budgets, Definition{Name: name, Value: compact(budgets[name])})
		}
	}
	return defs, nil
}

// ParseConnector checks one stored connector definition and resolves its
// ${VAR} references from env: what a worker polls with. budgets holds the
// budget it names, if any (with its sharers counted); a name it does not
// hold is a problem. With budgets nil the connector's Budget keeps only its
// name (the catalog's index links budgets itself). The error, if any, is a *Problems whose Source is
// source.
func ParseConnector(source string, value []byte, env Env, types TypeChecker, budgets map[string]Budget) (Connector, error) {
	problems := &Problems{Source: source}
	limits := DefinitionLimits()
	if !limits.checkDepth(value, problems, "") || !checkSyntax(value, "", problems) {
		return Connector{}, problems.err(nil)
	}
	c := check(env, types, source, value, func(field string) string { return field })
	problems.List = append(problems.List, c.problems...)
	secrets := sortedKeys(c.secrets)
	if name := c.conn.Budget.Name; name != "" && c.ok && budgets != nil {
		b, ok := budgets[name]
		if !ok {
			problems.add("budget", "%s", unknownBudget(name, budgets))
		}
		c.conn.Budget = b
	}
	if err := problems.err(secrets); err != nil {
		return Connector{}, err
	}
	return c.conn, nil
}

// ParseBudget checks one stored budget definition.
func ParseBudget(source, name string, value []byte) (Budget, error) {
	problems := &Problems{Source: source}
	if !checkSyntax(value, "", problems) {
		return Budget{}, problems.err(nil)
	}
	var tree any
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	_ = dec.Decode(&tree) // cannot fail: checkSyntax passed
	b, _ := budget(name, tree, "", problems)
	if err := problems.err(nil); err != nil {
		return Budget{}, err
	}
	return b, nil
}

// LoadDefinitions reads the definitions a process applies to the catalog
// at start and on SIGHUP, from where the environment says:
//
//   - CONNECTOR_TYPE set: one connector from the CONNECTOR_* variables;
//   - CONNECTORS_FILE set: that file, narrowed to the connector called
//     CONNECTOR_NAME when that is set;
//   - neither: ./connectors.json when it exists, else nothing (defs nil):
//     the process serves what the catalog holds (pollctl apply fills it).
//
// whole says the definitions are the whole set (a whole file), so that
// applying them removes the connectors and budgets they do not hold.
// source describes what was read, for the log.
func LoadDefinitions(env Env, types TypeChecker) (defs *Definitions, whole bool, source string, err error) {
	if _, ok := env.lookup("CONNECTOR_TYPE"); ok {
		limits, err := LimitsFrom(env)
		if err != nil {
			return nil, false, EnvSource, err
		}
		problems := &Problems{Source: EnvSource}
		obj := envEntry(env, limits, problems)
		if err := problems.err(nil); err != nil {
			return nil, false, EnvSource, err
		}
		written, err := json.Marshal(obj)
		if err != nil {
			return nil, false, EnvSource, fmt.Errorf("%s: %w", EnvSource, err)
		}
		file := append(append([]byte(`{"connectors": [`), written...), "]}"...)
		defs, err := ParseDefinitions(EnvSource, file, types)
		return defs, false, EnvSource, err
	}
	path, set := env.lookup("CONNECTORS_FILE")
	if !set || path == "" {
		path = DefaultFile
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, false, "the catalog only (no CONNECTORS_FILE, no ./" + DefaultFile + ")", nil
		}
	}
	limits, err := LimitsFrom(env)
	if err != nil {
		return nil, false, path, err
	}
	data, err := readCapped(path, limits.MaxBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, path, fmt.Errorf("connectors file %s: %w (create it, set CONNECTORS_FILE to its path, "+
			"or leave CONNECTORS_FILE unset to serve what pollctl apply put in the catalog)", path, fs.ErrNotExist)
	}
	if size, over := errors.AsType[tooLarge](err); over {
		problems := &Problems{Source: path}
		limits.checkSize(int64(size), "the file", problems, "")
		return nil, false, path, problems.err(nil)
	}
	if err != nil {
		return nil, false, path, fmt.Errorf("read connectors file: %w", err)
	}
	defs, err = parseKnown(path, data, types, limits, nil, false)
	if err != nil {
		return nil, false, path, err
	}
	name, _ := env.lookup("CONNECTOR_NAME")
	if name == "" {
		return defs, true, fmt.Sprintf("%s (%s)", path, plural(len(defs.Connectors), "connector")), nil
	}
	i := slices.IndexFunc(defs.Connectors, func(d Definition) bool { return d.Name == name })
	if i < 0 {
		names := make([]string, len(defs.Connectors))
		for i, d := range defs.Connectors {
			names[i] = d.Name
		}
		problems := &Problems{Source: path}
		problems.add("CONNECTOR_NAME", "no connector named %q in %s (available: %s)", name, path, strings.Join(names, ", "))
		return nil, false, path, problems.err(nil)
	}
	total := len(defs.Connectors)
	named, err := enabled(defs.Connectors[i])
	if err != nil {
		return nil, false, path, fmt.Errorf("%s: CONNECTOR_NAME %s: %w", path, name, err)
	}
	checked := defs.Checked[i]
	checked.Enabled = true
	defs.Connectors, defs.Checked, defs.Enabled = []Definition{named}, []Connector{checked}, 1
	return defs, false, fmt.Sprintf("%s (connector %q of %d)", path, name, total), nil
}

// connector reads a connector known unchanged as checked: what spans the
// file, without its check. It is false for one known does not hold (or
// that is not an object with a name, or whose fields read here are not of
// their types: its check says why).
func (known Known) connector(item json.RawMessage, at func(string) string) (checked, bool) {
	if known == nil {
		return checked{}, false
	}
	// The fields as json.Unmarshal into a struct of them would read them,
	// without its reflection: a file applied again reads them of 100,000.
	var name, typeName, interval, budget, enabled json.RawMessage
	fieldsOK := eachField(item, func(key []byte, value json.RawMessage) {
		switch string(key) {
		case "name":
			name = value
		case "type":
			typeName = value
		case "enabled":
			enabled = value
		case "interval":
			interval = value
		case "budget":
			budget = value
		}
	})
	c := Connector{Enabled: true, Interval: defaultInterval}
	var intervalText string
	var hasInterval bool
	var ok bool
	if c.Name, _, ok = stringField(name); !fieldsOK || !ok || c.Name == "" {
		return checked{}, false
	}
	if c.Type, _, ok = stringField(typeName); !ok {
		return checked{}, false
	}
	if c.Budget.Name, _, ok = stringField(budget); !ok {
		return checked{}, false
	}
	if intervalText, hasInterval, ok = stringField(interval); !ok {
		return checked{}, false
	}
	switch string(enabled) {
	case "", "null", "true":
	case "false":
		c.Enabled = false
	default:
		return checked{}, false
	}
	if !known(c.Name, compacted(item)) {
		return checked{}, false
	}
	if hasInterval {
		if d, err := time.ParseDuration(intervalText); err == nil {
			c.Interval = d
		}
	}
	return checked{conn: c, checkNotes: checkNotes{ok: true, name: c.Name, shown: strconv.Quote(c.Name), at: at}}, true
}

// stringField reads a field of a connector that is a string: present
// says it is not absent or null; ok is false when it is not a string.
func stringField(raw json.RawMessage) (s string, present, ok bool) {
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", false, true
	case raw[0] != '"':
		return "", false, false
	}
	return stringOf(raw), true, true
}

// splitList splits the list of a file parse checked into its items.
func splitList(raw json.RawMessage) ([]json.RawMessage, error) {
	items, ok := listItems(raw)
	if !ok {
		return nil, errors.New("not a list")
	}
	return items, nil
}

// compact is raw without the spaces between its tokens, in a slice of its
// own. A file a program wrote is compact already: its definitions are
// copied as they are.
func compact(raw []byte) json.RawMessage {
	if isCompact(raw) {
		return slices.Clone(raw)
	}
	var b bytes.Buffer
	b.Grow(len(raw))
	if err := json.Compact(&b, raw); err != nil {
		return slices.Clone(raw)
	}
	return b.Bytes()
}

// enabled is d with "enabled": true: a connector asked for by name
// (CONNECTOR_NAME) runs even if the file disables it.
func enabled(d Definition) (Definition, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(d.Value, &fields); err != nil {
		return d, err
	}
	if v, ok := fields["enabled"]; !ok || string(v) == "true" {
		return d, nil
	}
	fields["enabled"] = json.RawMessage("true")
	value, err := json.Marshal(fields)
	return Definition{Name: d.Name, Value: value}, err
}
