package connector

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// decodeObject decodes a type-specific config for Spec.check, numbers kept
// as written (json.Number); empty or null is {}. It is false for a config
// that is not a JSON object, which is left to DecodeConfig to report.
func decodeObject(raw json.RawMessage) (map[string]any, bool) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return map[string]any{}, true
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	if dec.Decode(&v) != nil || dec.More() {
		return nil, false
	}
	obj, ok := v.(map[string]any)
	return obj, ok
}

// check reports what the spec alone can tell about a type-specific
// config, every problem at once: unknown fields, values of the wrong kind,
// required fields left out, numbers out of range, strings not among the
// choices, secrets unresolved or not one line. decodable is false when a
// problem means the config cannot be decoded into the type's struct (an
// unknown field, a wrong kind).
func (s Spec) check(obj map[string]any) (problems []error, decodable bool) {
	c := &checker{}
	c.object("config", s.Fields, obj)
	return c.problems, !c.undecodable
}

type checker struct {
	problems    []error
	undecodable bool
}

func (c *checker) add(path, format string, args ...any) {
	c.problems = append(c.problems, errors.New(path+": "+fmt.Sprintf(format, args...)))
}

// wrongKind reports a value decoding would refuse.
func (c *checker) wrongKind(path, want string, v any) {
	c.add(path, "must be %s, not %s", want, JSONKind(v))
	c.undecodable = true
}

// object checks an object's fields; at the top ("config"), allow_hosts is
// known too, though Build has taken it out already.
func (c *checker) object(path string, fields []Field, obj map[string]any) {
	known := func(key string) bool {
		_, ok := find(fields, key)
		return ok || path == "config" && key == AllowHostsField
	}
	unknown := false
	for key := range obj {
		unknown = unknown || !known(key)
	}
	if unknown {
		c.undecodable = true
		names := names(fields)
		if path == "config" {
			names = append(names, AllowHostsField)
		}
		for _, key := range slices.Sorted(maps.Keys(obj)) {
			switch guess, near := Nearest(key, names); {
			case known(key):
			case near:
				c.add(path+"."+key, "unknown field (did you mean %q?)", guess)
			default:
				c.add(path+"."+key, "unknown field (known: %s)", strings.Join(names, ", "))
			}
		}
	}
	for _, f := range fields {
		v, present := obj[f.Name]
		c.field(fieldPath{path, f.Name}, f, v, present && v != nil)
	}
}

// fieldPath is where a field is, written out (String) only for a problem
// or a nested object: a config file has a great many fields, nearly all
// without one.
type fieldPath struct{ parent, name string }

func (p fieldPath) String() string { return p.parent + "." + p.name }

func (c *checker) field(at fieldPath, f Field, v any, present bool) {
	if !present || f.Required && empty(f.Kind, v) {
		if f.Required && f.Hint != "" {
			c.add(at.String(), "required: %s", f.Hint)
		} else if f.Required {
			c.add(at.String(), "required")
		}
		return
	}
	switch f.Kind {
	case String:
		s, ok := v.(string)
		switch {
		case !ok:
			c.wrongKind(at.String(), "a string", v)
		case s == "":
		case f.Secret:
			c.secret(at, s)
		case len(f.Enum) > 0 && !slices.Contains(f.Enum, s):
			c.notAChoice(at.String(), f, s)
		}
	case Duration:
		s, ok := v.(string)
		if !ok {
			c.wrongKind(at.String(), `a duration such as "30s"`, v)
		} else if _, err := time.ParseDuration(s); err != nil && s != "" {
			c.add(at.String(), `%q is not a duration (write a Go duration such as "30s", "5m" or "1h30m")`, s)
		}
	case Int:
		n, ok := v.(json.Number)
		if !ok {
			c.wrongKind(at.String(), "a whole number", v)
			return
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			c.add(at.String(), "%s is not a whole number", n)
			c.undecodable = true
			return
		}
		c.inRange(at, f, float64(i), n.String())
	case Number:
		n, ok := v.(json.Number)
		if !ok {
			c.wrongKind(at.String(), "a number", v)
			return
		}
		x, err := n.Float64()
		if err != nil {
			c.add(at.String(), "%s is not a number", n)
			c.undecodable = true
			return
		}
		c.inRange(at, f, x, n.String())
	case Bool:
		if _, ok := v.(bool); !ok {
			c.wrongKind(at.String(), "true or false", v)
		}
	case List:
		list, ok := v.([]any)
		if !ok {
			c.wrongKind(at.String(), `a list of strings, like ["a", "b"]`, v)
			return
		}
		for i, item := range list {
			if _, ok := item.(string); !ok {
				c.wrongKind(fmt.Sprintf("%s[%d]", at, i), "a string", item)
			}
		}
	case Map:
		m, ok := v.(map[string]any)
		if !ok {
			c.wrongKind(at.String(), `an object of strings, like {"name": "value"}`, v)
			return
		}
		if !allStrings(m) {
			for _, key := range slices.Sorted(maps.Keys(m)) {
				if _, ok := m[key].(string); !ok {
					c.wrongKind(at.String()+"."+key, "a string", m[key])
				}
			}
		}
	case Object:
		obj, ok := v.(map[string]any)
		if !ok {
			c.wrongKind(at.String(), "an object", v)
			return
		}
		c.object(at.String(), f.Fields, obj)
	}
}

// allStrings reports whether every value of m is a string: then there is
// nothing to report, in order, about it.
func allStrings(m map[string]any) bool {
	for _, v := range m {
		if _, ok := v.(string); !ok {
			return false
		}
	}
	return true
}

// empty is a value of the field's kind that a required field may not
// have: an empty or blank string, an empty list or object.
func empty(k Kind, v any) bool {
	switch v := v.(type) {
	case string:
		return (k == String || k == Duration) && strings.TrimSpace(v) == ""
	case []any:
		return k == List && len(v) == 0
	case map[string]any:
		return (k == Map || k == Object) && len(v) == 0
	}
	return false
}

// secret checks a credential without ever putting it in the message. A
// definition is checked as written (the catalog stores it so): a secret
// that is one ${VAR} reference passes, the worker resolves it.
func (c *checker) secret(at fieldPath, value string) {
	switch {
	case reference.MatchString(value):
	case strings.ContainsFunc(value, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		c.add(at.String(), `contains whitespace or control characters (often a trailing newline in the environment variable, `+
			`or a "Bearer " prefix: write the secret alone)`)
	}
}

// reference is a whole ${VAR} reference.
var reference = regexp.MustCompile(`^\$\{[A-Za-z_][A-Za-z0-9_]*\}$`)

func (c *checker) inRange(at fieldPath, f Field, x float64, written string) {
	if f.Range == nil || x >= f.Range.Min && x <= f.Range.Max {
		return
	}
	c.add(at.String(), "%s is out of range (%s)", written, f.Range.fix(f))
}

// fix says what to write instead of a number out of range.
func (r Range) fix(f Field) string {
	fix := fmt.Sprintf("write a number from %s to %s", number(r.Min), number(r.Max))
	if math.IsInf(r.Max, 1) {
		fix = fmt.Sprintf("write a number of %s or more", number(r.Min))
	}
	switch {
	case f.Default != nil:
		fix += fmt.Sprintf("; default %v", f.Default)
	case f.Example != nil:
		fix += fmt.Sprintf(", e.g. %v", f.Example)
	}
	return fix
}

// notAChoice reports a string outside Enum; one that differs only in case
// or spaces is told the value to write.
func (c *checker) notAChoice(path string, f Field, s string) {
	fix := choices(f.Enum, `"`, " or ")
	for _, choice := range f.Enum {
		if strings.EqualFold(strings.TrimSpace(s), choice) {
			fix = strconv.Quote(choice)
		}
	}
	if f.Default != nil {
		fix += fmt.Sprintf("; default %q", f.Default)
	}
	noun := strings.ReplaceAll(f.Name, "_", " ")
	c.add(path, "%q is not a valid %s (write %s)", s, noun, fix)
}

// choices writes a list for a person: "a", "b" or "c".
func choices(list []string, quote, last string) string {
	quoted := make([]string, len(list))
	for i, s := range list {
		quoted[i] = quote + s + quote
	}
	if len(quoted) < 2 {
		return strings.Join(quoted, "")
	}
	return strings.Join(quoted[:len(quoted)-1], ", ") + last + quoted[len(quoted)-1]
}

// number writes a bound as a person would: 10000000, not 1e+07.
func number(x float64) string {
	return strconv.FormatFloat(x, 'f', -1, 64)
}

// JSONKind names a decoded JSON value's type (decoded with UseNumber) for
// messages, never its value: "a string", "a list", "null".
func JSONKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "true/false"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
