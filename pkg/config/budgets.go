package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

// Budget is a rate-limit budget that connectors share across every worker
// (the top-level "budgets" of connectors.json): at most Limit upstream
// requests per Per, with Burst of them at once, drawn from one count in
// Redis before each request (pages and retries included).
type Budget struct {
	// Name is the budget's key in "budgets", such as "github-main".
	Name string
	// Limit requests per Per; at least 1.
	Limit int
	// Per is the window Limit counts over: whole seconds, at least 1s.
	Per time.Duration
	// Burst is how many requests may go at once after a quiet spell;
	// default 1, at most Limit.
	Burst int
	// Connectors counts the enabled connectors that draw from it; the
	// worker gives each its fair share (Fair).
	Connectors int
	// Demand is the requests per Per its enabled connectors ask for at
	// their intervals, one request a poll.
	Demand float64
}

// Fair is how often each of the budget's connectors gets a request when
// they all want more than the budget has: the budget's period per request
// times its connectors.
func (b Budget) Fair() time.Duration {
	if b.Limit <= 0 {
		return 0
	}
	return time.Duration(float64(b.Per) / float64(b.Limit) * float64(max(1, b.Connectors)))
}

// Rate writes the budget as "60 per 1m (burst 5)".
func (b Budget) Rate() string {
	return fmt.Sprintf("%d per %s (burst %d)", b.Limit, shortDuration(b.Per), b.Burst)
}

const (
	defaultBudgetBurst = 1
	minBudgetPer       = time.Second
	maxBudgetLimit     = 1_000_000
)

// budgetSpec describes one entry of "budgets"; the schema and the docs
// come from it, and the validator checks its fields in this order.
var budgetSpec = connector.Spec{
	Summary: "A rate-limit budget connectors share across every worker.",
	Fields: []connector.Field{
		{Name: "limit", Kind: connector.Int, Required: true, Range: connector.Between(1, maxBudgetLimit), Example: 5000,
			Description: "Upstream requests allowed per `per`, counted across every worker and every connector on the budget (pages and retries included)."},
		{Name: "per", Kind: connector.Duration, Required: true, Example: "1h",
			Description: "The window `limit` counts over: a Go duration in whole seconds, at least `1s`."},
		{Name: "burst", Kind: connector.Int, Range: connector.Between(1, maxBudgetLimit), Default: defaultBudgetBurst,
			Description: "Requests that may go at once after a quiet spell; at most `limit`. At least 2 lets the budget share itself fairly (see [Budgets](#rate-limit-budgets))."},
	},
}

// BudgetSpec describes one entry of the top-level "budgets" map.
func BudgetSpec() connector.Spec { return budgetSpec }

var budgetFields = fieldNames(budgetSpec.Fields)

// budgets reads the top-level "budgets" object: name -> Budget.
func budgets(raw json.RawMessage, problems *Problems) map[string]Budget {
	if raw == nil {
		return nil
	}
	const example = `{"github-main": {"limit": 5000, "per": "1h", "burst": 50}}`
	var tree any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	_ = dec.Decode(&tree) // cannot fail: the file is valid JSON
	obj, ok := tree.(map[string]any)
	if !ok {
		if tree != nil {
			problems.add("budgets", "must be an object of budgets by name, not %s (write %s)", connector.JSONKind(tree), example)
		}
		return nil
	}
	out := make(map[string]Budget, len(obj))
	for _, name := range sortedKeys(obj) {
		at := "budgets." + name
		if !validName.MatchString(name) || len(name) > maxNameLength {
			problems.add(at, `%q is not a valid budget name (use lowercase letters, digits, "-" and "_", at most %d)`, name, maxNameLength)
			continue
		}
		if b, ok := budget(name, obj[name], at, problems); ok {
			out[name] = b
		}
	}
	return out
}

func budget(name string, v any, at string, problems *Problems) (Budget, bool) {
	b := Budget{Name: name, Burst: defaultBudgetBurst}
	obj, ok := v.(map[string]any)
	if !ok {
		problems.add(at, `must be an object like {"limit": 5000, "per": "1h", "burst": 50}, not %s`, connector.JSONKind(v))
		return b, false
	}
	before := len(problems.List)
	for _, key := range sortedKeys(obj) {
		if !slices.Contains(budgetFields, key) {
			hint := "known: limit, per, burst"
			if guess, near := connector.Nearest(key, budgetFields); near {
				hint = fmt.Sprintf("did you mean %q?", guess)
			}
			problems.add(at+"."+key, "unknown field (%s)", hint)
		}
	}
	count := func(field string, def int) int {
		v, present := obj[field]
		if !present || v == nil {
			if def == 0 {
				problems.add(at+"."+field, "required (a whole number of requests such as 5000)")
			}
			return def
		}
		n, isNumber := v.(json.Number)
		i, err := strconv.Atoi(n.String())
		if !isNumber || err != nil || i < 1 || i > maxBudgetLimit {
			problems.add(at+"."+field, "must be a whole number from 1 to %d, not %s", maxBudgetLimit, shownValue(v))
			return def
		}
		return i
	}
	b.Limit = count("limit", 0)
	b.Burst = count("burst", defaultBudgetBurst)
	switch per, present := obj["per"]; {
	case !present || per == nil:
		problems.add(at+".per", `required (the window the limit counts over, such as "1h")`)
	default:
		s, _ := per.(string)
		d, err := time.ParseDuration(s)
		switch {
		case err != nil && s != "" && json.Valid([]byte(s)):
			problems.add(at+".per", `%q is not a duration (write "%ss")`, s, s)
		case err != nil:
			problems.add(at+".per", `must be a duration such as "1m" or "1h", not %s`, shownValue(per))
		case d < minBudgetPer || d%time.Second != 0:
			problems.add(at+".per", "%s must be whole seconds, at least %s", s, minBudgetPer)
		default:
			b.Per = d
		}
	}
	if b.Limit > 0 && b.Burst > b.Limit {
		problems.add(at+".burst", "%d is more than limit %d (at most the limit)", b.Burst, b.Limit)
	}
	return b, len(problems.List) == before
}

func shownValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case json.Number:
		return x.String()
	}
	return connector.JSONKind(v)
}

// linkBudgets gives every connector that names a budget its Budget, and
// reports a name "budgets" does not hold at the connector's budget field.
// It runs before merge, so that its problems keep the file's order.
func linkBudgets(list checkedList, all map[string]Budget, problems *Problems) {
	for i := range list.notes {
		c, conn := &list.notes[i], &list.conns[i]
		name := conn.Budget.Name
		if name == "" {
			continue
		}
		b, ok := all[name]
		if !ok {
			c.problems = append(c.problems, Problem{Path: c.at("budget"), Message: unknownBudget(name, all)})
			c.ok = false
			continue
		}
		conn.Budget = b
	}
	// Count the sharers once every connector is linked.
	counts := map[string]Budget{}
	for i, c := range list.notes {
		if conn := &list.conns[i]; c.ok && conn.Enabled && conn.Budget.Name != "" {
			b := counts[conn.Budget.Name]
			b.Connectors++
			b.Demand += float64(conn.Budget.Per) / float64(conn.Interval)
			counts[conn.Budget.Name] = b
		}
	}
	for i := range list.conns {
		conn := &list.conns[i]
		if n, ok := counts[conn.Budget.Name]; ok {
			conn.Budget.Connectors, conn.Budget.Demand = n.Connectors, n.Demand
		}
	}
	for name, n := range counts {
		b := all[name]
		b.Connectors, b.Demand = n.Connectors, n.Demand
		all[name] = b
	}
}

func unknownBudget(name string, all map[string]Budget) string {
	if len(all) == 0 {
		return fmt.Sprintf(`%q names no budget (declare it at the top of the file: "budgets": {%q: {"limit": 5000, "per": "1h", "burst": 50}})`, name, name)
	}
	names := sortedKeys(all)
	hint := ""
	if guess, near := connector.Nearest(name, names); near {
		hint = fmt.Sprintf("; did you mean %q?", guess)
	}
	return fmt.Sprintf(`%q names no budget (known: %s%s; or add it to "budgets")`, name, joinNames(names), hint)
}

func joinNames(names []string) string {
	var b bytes.Buffer
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(n)
	}
	return b.String()
}

// budgetWarnings says which budgets cannot serve their connectors at their
// intervals, with the rate each connector gets: the config is valid (the
// polls wait or are deferred, never fail), but slower than written. A
// budget that serves their intervals but not its adaptive connectors at
// their adaptive.min says so too: their effective interval stops at the
// budget's fair share (Adaptive.Clamp).
func budgetWarnings(all map[string]Budget, conns []Connector) []Problem {
	var out []Problem
	for _, name := range sortedKeys(all) {
		b := all[name]
		if b.Connectors == 0 {
			continue
		}
		if b.Demand > float64(b.Limit) {
			out = append(out, Problem{Path: "budgets." + name, Message: fmt.Sprintf(
				"%s is less than its %d connectors ask for at their intervals (%s per %s, one request a poll): "+
					"each gets about one request every %s (raise limit, lengthen their intervals, or split the budget if the upstream allows)",
				b.Rate(), b.Connectors, strconv.FormatFloat(math.Ceil(b.Demand), 'f', -1, 64), shortDuration(b.Per),
				shortDuration(b.Fair().Round(time.Second)))})
			continue
		}
		if w, ok := adaptiveWarning(b, conns); ok {
			out = append(out, w)
		}
	}
	return out
}

// maxNamed is how many connectors a warning names.
const maxNamed = 5

// adaptiveWarning says which enabled adaptive connectors on b have an
// adaptive.min shorter than b's fair share, which their effective interval
// never goes below.
func adaptiveWarning(b Budget, conns []Connector) (Problem, bool) {
	fair := b.Fair()
	var named []string
	slower := 0
	for _, c := range conns {
		if c.Budget.Name != b.Name || !c.Enabled || !c.Adaptive.On() || c.Adaptive.Min >= fair {
			continue
		}
		slower++
		if len(named) < maxNamed {
			named = append(named, fmt.Sprintf("%s (min %s)", c.Name, shortDuration(c.Adaptive.Min)))
		}
	}
	if slower == 0 {
		return Problem{}, false
	}
	who := joinNames(named)
	if slower > len(named) {
		who += fmt.Sprintf(" and %d more", slower-len(named))
	}
	floor := shortDuration(fair.Round(time.Second))
	if fair%time.Second != 0 {
		floor = "about " + floor
	}
	return Problem{Path: "budgets." + b.Name, Message: fmt.Sprintf(
		"%s shared by %d connectors gives each a request every %s: the effective interval of its adaptive connectors %s "+
			"stops there, above their adaptive.min (raise limit, set adaptive.min to at least %s, or split the budget if the upstream allows)",
		b.Rate(), b.Connectors, floor, who, shortDuration(fair.Truncate(time.Second)+ceilSecond(fair)))}, true
}

// ceilSecond is the part of d that makes it up to whole seconds: 0 for
// whole seconds, else 1s.
func ceilSecond(d time.Duration) time.Duration {
	if d%time.Second == 0 {
		return 0
	}
	return time.Second
}
