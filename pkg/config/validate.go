package config

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

// Limits and defaults of the universal fields; EntrySpec documents them.
const (
	defaultInterval = 60 * time.Second
	minInterval     = time.Second
	maxTimeout      = 10 * time.Second
	defaultLeaseTTL = 2 * time.Second
	minLeaseTTL     = time.Second
	defaultRetries  = 2
	maxRetries      = 10
	defaultBackoff  = time.Second
	maxNameLength   = 64
	maxSeenCap      = 10_000_000
)

// DefaultSeenCap is seen_cap's default: Connector.SeenCap.
const DefaultSeenCap = 100_000

var validName = regexp.MustCompile(namePattern)

// reported marks a value whose problem is already reported (a CONNECTOR_CONFIG
// that is not JSON), so that it is skipped rather than reported twice.
type reported struct{}

// validator checks one connector, alone: what checks across connectors
// need (names must be unique) is left to whoever merges the results
// (checked, merge), so that connectors can be checked on every core.
type validator struct {
	env      Env
	types    TypeChecker
	problems *Problems
	secrets  map[string]bool
	// connName is the connector's valid name, shownName that name as
	// messages may show it, and nameAt where in problems a name problem goes.
	connName, shownName string
	nameAt              int
}

func newValidator(env Env, types TypeChecker, problems *Problems) *validator {
	return &validator{env: env, types: types, problems: problems}
}

// connector checks one connector object. at turns a field path such as
// "retries.max" into the path a user reads: "connectors[2].retries.max" or
// "CONNECTOR_RETRIES". It reports false when the connector has problems.
func (v *validator) connector(item any, at func(field string) string) (Connector, bool) {
	before := len(v.problems.List)
	obj, ok := item.(map[string]any)
	if !ok {
		v.problems.add(at(""), `must be an object like {"name": "...", "type": "..."}, not %s`, connector.JSONKind(item))
		return Connector{}, false
	}
	r := &reader{validator: v, at: at, obj: obj}
	for _, key := range sortedKeys(obj) {
		switch {
		case !slices.Contains(fields, key):
			r.unknownField(key, fields)
			delete(obj, key)
		case obj[key] == reported{}:
			r.skipField(key)
			delete(obj, key)
		case !hasVariable(obj[key]):
			// Nothing to resolve: most fields of most files.
		default:
			soFar := len(v.problems.List)
			obj[key] = r.expand(obj[key], []step{{key: key}})
			if len(v.problems.List) > soFar {
				// A variable did not resolve: checking the field would only
				// repeat that, or complain about the unresolved "${".
				r.skipField(key)
				delete(obj, key)
			}
		}
	}
	conn := r.read()
	return conn, len(v.problems.List) == before
}

// reader checks the fields of one connector.
type reader struct {
	*validator
	at  func(field string) string
	obj map[string]any
	// from maps a field path to the template its value was resolved from,
	// such as "${TOKEN}": messages show the template, never the value.
	from map[string]string
	// skip holds fields whose problem is already reported.
	skip map[string]bool
}

// from, skip and secrets are made on first use: most connectors need none.

func (r *reader) skipField(key string) {
	if r.skip == nil {
		r.skip = map[string]bool{}
	}
	r.skip[key] = true
}

// hasVariable reports whether a string under v may hold a ${VAR}
// reference (or a "$${" escape) for expand to resolve.
func hasVariable(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.Contains(x, "${")
	case map[string]any:
		for _, item := range x {
			if hasVariable(item) {
				return true
			}
		}
	case []any:
		for _, item := range x {
			if hasVariable(item) {
				return true
			}
		}
	}
	return false
}

func (r *reader) problem(field, format string, args ...any) {
	r.problems.add(r.at(field), format, args...)
}

// expand resolves ${VAR} in every string under v, the value at path. The
// path is written out only for a string that holds a variable: most hold
// none, and a large config has a great many of them.
func (r *reader) expand(v any, path []step) any {
	switch x := v.(type) {
	case string:
		if !strings.Contains(x, "${") {
			return x
		}
		at := pathString(path)
		out, values, err := expand(x, r.env)
		if err != nil {
			r.problem(at, "%s", err)
			return x
		}
		if values != nil {
			if r.from == nil {
				r.from = map[string]string{}
			}
			r.from[at] = x
		}
		for _, value := range values {
			if value != "" {
				if r.secrets == nil {
					r.secrets = map[string]bool{}
				}
				r.secrets[value] = true
			}
		}
		return out
	case map[string]any:
		for _, key := range sortedKeys(x) { // problems in a stable order
			if expands(x[key]) {
				x[key] = r.expand(x[key], append(path, step{key: key}))
			}
		}
	case []any:
		for i := range x {
			if expands(x[i]) {
				x[i] = r.expand(x[i], append(path, step{index: i, inList: true}))
			}
		}
	}
	return v
}

// expands says whether expand has anything to do with v: a string only
// when it holds "${" (a string put back in its map would be boxed anew),
// an object or list always (expand changes them in place).
func expands(v any) bool {
	s, isString := v.(string)
	return !isString || strings.Contains(s, "${")
}

// step is one key or list index of a path within a connector.
type step struct {
	key    string
	index  int
	inList bool
}

func pathString(path []step) string {
	s := ""
	for _, p := range path {
		if p.inList {
			s = fmt.Sprintf("%s[%d]", s, p.index)
		} else {
			s = join(s, p.key)
		}
	}
	return s
}

func (r *reader) read() Connector {
	conn := Connector{
		Name:    r.name(),
		Type:    r.typeName(),
		Enabled: r.enabled(),
		Labels:  r.labels(),
	}

	interval, intervalOK := r.duration("interval", defaultInterval)
	switch {
	case intervalOK && interval.value < minInterval:
		r.problem("interval", "%s is too short (at least %s)", interval.text, minInterval)
		intervalOK = false
	case intervalOK && interval.value%time.Second != 0:
		r.problem("interval", "%s is not a whole number of seconds (ticks fire on whole seconds: write e.g. %s)",
			interval.text, interval.value.Round(time.Second))
		intervalOK = false
	}
	conn.Interval = interval.value
	conn.Adaptive = r.adaptive(interval, intervalOK)
	// A poll ends before the next is due: an adaptive connector's next
	// may be its min away.
	shortest := interval
	if conn.Adaptive.On() {
		shortest = duration{value: conn.Adaptive.Min, text: "adaptive.min " + shortDuration(conn.Adaptive.Min)}
	} else {
		shortest.text = "interval " + interval.text
	}

	jitter, ok := r.duration("jitter", 0)
	if ok && jitter.value < 0 {
		r.problem("jitter", "%s must not be negative", jitter.text)
	} else if ok && intervalOK && jitter.value >= interval.value {
		r.problem("jitter", "%s must be shorter than interval %s", jitter.text, interval.text)
	}
	conn.Jitter = jitter.value

	timeout, ok := r.duration("timeout", min(maxTimeout, shortest.value/2))
	if ok && timeout.value <= 0 {
		r.problem("timeout", "%s must be longer than 0", timeout.text)
	} else if ok && intervalOK && timeout.value >= shortest.value {
		r.problem("timeout", "%s must be shorter than %s", timeout.text, shortest.text)
	}
	conn.Timeout = timeout.value

	conn.Retries = r.retries(interval, intervalOK)

	leaseTTL, ok := r.duration("lease_ttl", defaultLeaseTTL)
	if ok && leaseTTL.value < minLeaseTTL {
		r.problem("lease_ttl", "%s is too short (at least %s)", leaseTTL.text, minLeaseTTL)
	}
	conn.LeaseTTL = leaseTTL.value

	conn.SeenCap = DefaultSeenCap
	if v, present := r.get("seen_cap"); present {
		conn.SeenCap = r.count("seen_cap", v, DefaultSeenCap, 1, maxSeenCap)
	}

	conn.Budget.Name = r.budget()
	conn.Config = r.config(conn.Type)
	return conn
}

// adaptive reads the opt-in bounds of the effective interval; the
// interval is where it starts, so it must lie within them. The zero
// Adaptive when absent or invalid (and reported).
func (r *reader) adaptive(interval duration, intervalOK bool) Adaptive {
	v, present := r.get("adaptive")
	if !present {
		return Adaptive{}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		r.problem("adaptive", `must be an object like {"min": "10s", "max": "10m"}, not %s`, connector.JSONKind(v))
		return Adaptive{}
	}
	for _, key := range sortedKeys(obj) {
		if !slices.Contains(adaptiveFields, key) {
			r.unknownField("adaptive."+key, adaptiveFields)
		}
	}
	lo, loOK := r.bound("adaptive.min", `the shortest interval polls may come at, such as "10s"`)
	hi, hiOK := r.bound("adaptive.max", `the longest interval polls may come at, such as "10m"`)
	if !loOK || !hiOK {
		return Adaptive{}
	}
	if lo.value >= hi.value {
		r.problem("adaptive.min", "%s must be shorter than adaptive.max %s (the interval moves between the two; "+
			"for a fixed interval leave adaptive out)", lo.text, hi.text)
		return Adaptive{}
	}
	if !intervalOK {
		return Adaptive{}
	}
	if interval.value < lo.value || interval.value > hi.value {
		r.problem("interval", "%s is outside adaptive %s..%s: the effective interval starts from it (write one from %s to %s)",
			interval.text, lo.text, hi.text, lo.text, hi.text)
		return Adaptive{}
	}
	return Adaptive{Min: lo.value, Max: hi.value}
}

// bound reads one required bound of "adaptive": whole seconds, at least 1s.
func (r *reader) bound(path, required string) (duration, bool) {
	if _, present := r.get(path); !present {
		r.problem(path, "required (%s)", required)
		return duration{}, false
	}
	d, ok := r.duration(path, 0)
	switch {
	case !ok:
	case d.value < minInterval:
		r.problem(path, "%s is too short (at least %s)", d.text, minInterval)
		ok = false
	case d.value%time.Second != 0:
		r.problem(path, "%s is not a whole number of seconds (ticks fire on whole seconds: write e.g. %s)",
			d.text, d.value.Round(time.Second))
		ok = false
	}
	return d, ok
}

// budget reads the name of the budget the connector draws from; whether
// "budgets" holds it is checked across the file (linkBudgets).
func (r *reader) budget() string {
	v, present := r.get("budget")
	if !present {
		return ""
	}
	name, ok := v.(string)
	if !ok || name == "" {
		r.problem("budget", `must be the name of one of the file's "budgets", such as "github-main", not %s`, connector.JSONKind(v))
		return ""
	}
	return name
}

// get returns the value at a field path such as "interval" or
// "retries.max"; a null counts as absent.
func (r *reader) get(path string) (any, bool) {
	obj := r.obj
	if parent, field, nested := strings.Cut(path, "."); nested {
		obj, _ = r.obj[parent].(map[string]any)
		path = field
	}
	v, ok := obj[path]
	return v, ok && v != nil
}

// show quotes a string for a message, or names the ${VAR} it came from.
func (r *reader) show(path, s string) string {
	if template, ok := r.from[path]; ok {
		return "value from " + template
	}
	return strconv.Quote(s)
}

func (r *reader) unknownField(path string, known []string) {
	name := path[strings.LastIndexByte(path, '.')+1:]
	if guess, ok := connector.Nearest(name, known); ok {
		r.problem(path, "unknown field (did you mean %q?)", guess)
		return
	}
	r.problem(path, "unknown field (known: %s)", strings.Join(known, ", "))
}

// text returns a string field. When it is absent or empty, it reports
// required, unless an earlier problem already explains why.
func (r *reader) text(field, required string) (string, bool) {
	v, present := r.get(field)
	s, isString := v.(string)
	switch {
	case present && !isString:
		r.problem(field, "must be a string, not %s", connector.JSONKind(v))
	case s == "" && !r.skip[field]:
		r.problem(field, "%s", required)
	}
	return s, s != ""
}

func (r *reader) name() string {
	name, ok := r.text("name", `required (a unique name such as "noaa-alerts-ca")`)
	switch {
	case !ok:
	case !validName.MatchString(name):
		r.problem("name", `%s is not a valid name (use lowercase letters, digits, "-" and "_")`, r.show("name", name))
	case len(name) > maxNameLength:
		r.problem("name", "is %d characters long (at most %d)", len(name), maxNameLength)
	default:
		r.connName, r.shownName, r.nameAt = name, r.show("name", name), len(r.problems.List)
	}
	return name
}

func (r *reader) typeName() string {
	typeName, ok := r.get("type")
	if s, isString := typeName.(string); !ok || !isString || s == "" {
		// Only then is the list of types worth writing out.
		known := strings.Join(r.types.Types(), ", ")
		s, _ := r.text("type", fmt.Sprintf("required (known: %s)", known))
		return s
	}
	name := typeName.(string)
	if !r.types.Known(name) {
		known := strings.Join(r.types.Types(), ", ")
		hint := ""
		if guess, near := connector.Nearest(name, r.types.Types()); near {
			hint = fmt.Sprintf("; did you mean %q?", guess)
		}
		r.problem("type", "unknown type %s (known: %s)%s", r.show("type", name), known, hint)
	}
	return name
}

func (r *reader) enabled() bool {
	v, present := r.get("enabled")
	if !present {
		return true
	}
	enabled, ok := v.(bool)
	if !ok {
		r.problem("enabled", "must be true or false, not %s", connector.JSONKind(v))
		return true
	}
	return enabled
}

// duration is a parsed duration field and how a message shows it.
type duration struct {
	value time.Duration
	text  string // as written, "value from ${VAR}", or the default
}

// duration reads a duration field at path, or returns def when absent.
// ok is false when the field is invalid (and reported).
func (r *reader) duration(path string, def time.Duration) (duration, bool) {
	v, present := r.get(path)
	if !present {
		return duration{value: def, text: shortDuration(def)}, true
	}
	s, isString := v.(string)
	if !isString {
		if number, isNumber := v.(json.Number); isNumber {
			r.problem(path, `%s is not a duration (write "%ss")`, number, number)
		} else {
			r.problem(path, `must be a duration such as "30s", not %s`, connector.JSONKind(v))
		}
		return duration{value: def, text: shortDuration(def)}, false
	}
	d, err := time.ParseDuration(s)
	if err == nil {
		return duration{value: d, text: r.durationText(path, s)}, true
	}
	_, tainted := r.from[path]
	if _, numErr := strconv.ParseFloat(s, 64); numErr == nil && !tainted {
		r.problem(path, `%q is not a duration (write "%ss")`, s, s)
	} else {
		r.problem(path, `%s is not a duration (write a Go duration such as "30s", "5m" or "1h30m")`, r.show(path, s))
	}
	return duration{value: def, text: shortDuration(def)}, false
}

// durationText shows a valid duration as written, unless it came from a
// variable.
func (r *reader) durationText(path, s string) string {
	if template, ok := r.from[path]; ok {
		return "value from " + template
	}
	return s
}

// shortDuration writes a default the way a user would: 1m, not 1m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func (r *reader) retries(interval duration, intervalOK bool) Retries {
	retries := Retries{Max: defaultRetries, Backoff: defaultBackoff}
	v, present := r.get("retries")
	if !present {
		return retries
	}
	obj, ok := v.(map[string]any)
	if !ok {
		r.problem("retries", `must be an object like {"max": 3, "backoff": "2s"}, not %s`, connector.JSONKind(v))
		return retries
	}
	for _, key := range sortedKeys(obj) {
		if !slices.Contains(retryFields, key) {
			r.unknownField("retries."+key, retryFields)
		}
	}
	if v, present := r.get("retries.max"); present {
		retries.Max = r.count("retries.max", v, defaultRetries, 0, maxRetries)
	}
	backoff, ok := r.duration("retries.backoff", defaultBackoff)
	if ok && backoff.value < 0 {
		r.problem("retries.backoff", "%s must not be negative", backoff.text)
	} else if ok && intervalOK && backoff.value > interval.value {
		r.problem("retries.backoff", "%s must not be longer than interval %s", backoff.text, interval.text)
	}
	retries.Backoff = backoff.value
	return retries
}

// count reads a whole number field from lo to hi; def when it is not one.
func (r *reader) count(path string, v any, def, lo, hi int) int {
	number, ok := v.(json.Number)
	if !ok {
		r.problem(path, "must be a number from %d to %d, not %s", lo, hi, connector.JSONKind(v))
		return def
	}
	n, err := strconv.Atoi(number.String())
	if err != nil {
		r.problem(path, "%s is not a whole number", number)
		return def
	}
	if n < lo || n > hi {
		r.problem(path, "%d is out of range (%d..%d)", n, lo, hi)
	}
	return n
}

func (r *reader) labels() map[string]string {
	v, present := r.get("labels")
	if !present {
		return nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		r.problem("labels", `must be an object like {"team": "wx"}, not %s`, connector.JSONKind(v))
		return nil
	}
	labels := make(map[string]string, len(obj))
	for _, key := range sortedKeys(obj) {
		value, isString := obj[key].(string)
		switch {
		case key == "":
			r.problem("labels", "has an empty key (label names must not be empty)")
		case !isString:
			r.problem(join("labels", key), "must be a string, not %s", connector.JSONKind(obj[key]))
		default:
			labels[key] = value
		}
	}
	return labels
}

// config re-encodes the type-specific object, with ${VAR} resolved, and has
// the type validate it.
func (r *reader) config(typeName string) json.RawMessage {
	raw := json.RawMessage("{}")
	var decoded map[string]any
	if v, present := r.get("config"); present {
		obj, ok := v.(map[string]any)
		if !ok {
			r.problem("config", "must be an object with the settings of the connector type, not %s", connector.JSONKind(v))
			return raw
		}
		encoded, err := encodeJSON(obj)
		if err != nil { // cannot happen for decoded JSON; never echo the value
			r.problem("config", "cannot be encoded: %T", err)
			return raw
		}
		raw, decoded = encoded, obj
	}
	if r.skip["config"] || typeName == "" || !r.types.Known(typeName) {
		return raw
	}
	var err error
	if types, ok := r.types.(decodedChecker); ok && decoded != nil {
		err = types.ValidateDecoded(typeName, raw, decoded)
	} else {
		err = r.types.Validate(typeName, raw)
	}
	// A type lists every problem of a config at once (errors.Join): each
	// is a problem of its own, on a line of its own.
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			r.problem("config", "%s", e)
		}
	} else if err != nil {
		r.problem("config", "%s", err)
	}
	return raw
}

// decodedChecker is a TypeChecker that takes a config decoded already
// (*connector.Registry): the type's Spec checks the tree the validator has,
// and only its strict decoding reads raw, so that each connector of a file
// is decoded generically once.
type decodedChecker interface {
	ValidateDecoded(typeName string, raw json.RawMessage, decoded map[string]any) error
}

func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
}
