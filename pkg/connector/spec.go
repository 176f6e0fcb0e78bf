package connector

import (
	"math"
	"strings"
)

// Spec describes a connector type's config once: the fields of its "config"
// object, each with its kind, default, description and limits. Build checks
// every config against it (unknown fields, kinds, required fields, ranges,
// choices, secrets), and the docs come from it: each connector README's
// field table (Spec.Table) and the JSON Schema of connectors.json
// (Spec.JSONSchema). A config type declares it with its Spec method, next
// to its struct:
//
//	var spec = connector.Spec{
//		Summary: "The earthquakes of one USGS summary feed.",
//		Fields: []connector.Field{
//			{Name: "feed", Kind: connector.String, Required: true, Hint: `a feed name such as "all_hour"`,
//				Description: "The summary feed."},
//			connector.BaseURL("https://earthquake.usgs.gov", "", "The site root."),
//		},
//	}
//
//	func (Config) Spec() connector.Spec { return spec }
//
// Fields every type shares are declared once here: BaseURL, MaxPages,
// PageSize, EmitDeletes, and AllowHosts, which Build takes for every type
// without the type declaring it.
type Spec struct {
	// Summary says in a sentence what the type polls.
	Summary string
	// Fields are the config's fields in the order the docs show them. A
	// type never lists allow_hosts: WithShared adds it.
	Fields []Field
}

// Kind is the JSON a field holds.
type Kind string

// Kinds of fields.
const (
	String Kind = "string"
	// Int is a whole number.
	Int    Kind = "integer"
	Number Kind = "number"
	Bool   Kind = "boolean"
	// Duration is a Go duration written as a string: "30s", "5m", "1h30m".
	Duration Kind = "duration"
	// List is a list of strings.
	List Kind = "list"
	// Map is an object whose values are strings, such as HTTP headers.
	Map Kind = "map"
	// Object is an object with its own Fields.
	Object Kind = "object"
)

// Field is one field of a config.
type Field struct {
	// Name is the JSON key.
	Name string
	Kind Kind
	// Description says what the field does and how to write it, in
	// Markdown: a README's "meaning" column, an editor's tooltip. The
	// limits (Range, Enum) are appended by whatever shows it; do not repeat
	// them.
	Description string
	// Required refuses a config that leaves the field out, null or empty:
	// "config.<name>: required: <Hint>".
	Required bool
	// Hint says what to write, ending the "required" message: `a JQL filter
	// such as "project = OPS"`.
	Hint string
	// Default is what ApplyDefaults gives a config that leaves the field
	// out (a test holds the two equal); nil for none.
	Default any
	// DefaultText describes a default no value shows, such as "the item"
	// or "pollgrid's", for the docs.
	DefaultText string
	// Example is a value to show in the docs and the schema.
	Example any
	// Secret marks a credential, written as "${VAR}": it is never quoted in
	// an error, and it is refused unresolved or with whitespace in it.
	Secret bool
	// Range bounds an Int or Number field.
	Range *Range
	// Enum lists the values a String field may take; "" is left out (the
	// default applies).
	Enum []string
	// Pattern is a regular expression (RE2, anchored) the value of a String
	// field matches. The type's Validate checks it with a message that says
	// the fix (compile it from the same constant); the schema shows it to
	// editors.
	Pattern string
	// MaxLength bounds a String field's length, for the schema (see Pattern).
	MaxLength int
	// Fields are an Object's fields.
	Fields []Field
}

// Range bounds a number field: Min to Max, both included.
type Range struct {
	Min, Max float64
}

// Between is the range lo to hi, both included.
func Between(lo, hi float64) *Range { return &Range{Min: lo, Max: hi} }

// AtLeast is the range lo and more.
func AtLeast(lo float64) *Range { return &Range{Min: lo, Max: math.Inf(1)} }

// WithShared returns s with the fields Build gives every type
// (allow_hosts) after the type's own.
func (s Spec) WithShared() Spec {
	fields := make([]Field, 0, len(s.Fields)+1)
	fields = append(fields, s.Fields...)
	s.Fields = append(fields, AllowHosts)
	return s
}

// Lookup finds the field at a dotted path, "pagination.max_pages".
func (s Spec) Lookup(path string) (Field, bool) {
	fields := s.Fields
	for {
		name, rest, nested := strings.Cut(path, ".")
		f, ok := find(fields, name)
		if !ok || !nested {
			return f, ok
		}
		fields, path = f.Fields, rest
	}
}

func find(fields []Field, name string) (Field, bool) {
	for _, f := range fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

func names(fields []Field) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.Name
	}
	return out
}
