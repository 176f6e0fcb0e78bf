package connector

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Table writes the fields as a Markdown table, the "Config fields" of a
// connector README: field, default, meaning. An Object's fields follow it
// as rows of their own, named with a dot: pagination.style; the Object has
// a row when it has a description.
func (s Spec) Table() string {
	var b strings.Builder
	b.WriteString("| field | default | meaning |\n|---|---|---|\n")
	var rows func(prefix string, fields []Field)
	rows = func(prefix string, fields []Field) {
		for _, f := range fields {
			if f.Kind != Object || len(f.Fields) == 0 || f.Description != "" {
				fmt.Fprintf(&b, "| `%s%s` | %s | %s |\n", prefix, f.Name, cell(f.DefaultShown()), cell(f.Meaning()))
			}
			if f.Kind == Object {
				rows(prefix+f.Name+".", f.Fields)
			}
		}
	}
	rows("", s.Fields)
	return b.String()
}

// DefaultShown is the field's default as the docs show it: **required**,
// the value as JSON, what DefaultText says, or "—".
func (f Field) DefaultShown() string {
	switch {
	case f.Required:
		return "**required**"
	case f.DefaultText != "":
		return f.DefaultText
	case f.Default != nil:
		return "`" + literal(f.Default) + "`"
	}
	return "—"
}

// Meaning is the description with the field's limits: its range and its
// choices.
func (f Field) Meaning() string {
	var parts []string
	if f.Description != "" {
		parts = append(parts, f.Description)
	}
	if f.Range != nil {
		if math.IsInf(f.Range.Max, 1) {
			parts = append(parts, fmt.Sprintf("%s or more.", number(f.Range.Min)))
		} else {
			parts = append(parts, fmt.Sprintf("From %s to %s.", number(f.Range.Min), number(f.Range.Max)))
		}
	}
	if len(f.Enum) > 0 {
		parts = append(parts, "One of "+choices(f.Enum, "`", " or ")+".")
	}
	return strings.Join(parts, " ")
}

// cell makes text fit a table cell: a "|" would end it.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}

func literal(v any) string {
	b, err := json.Marshal(v)
	if err != nil { // a Default is JSON by construction
		return fmt.Sprint(v)
	}
	return string(b)
}

// JSONSchema is the JSON Schema (draft 2020-12) of a config object with
// these fields: each field's kind, limits, default, example and
// description; secrets writeOnly; unknown fields refused, as Build refuses
// them. A string may be a ${VAR} reference wherever its value is
// constrained (a choice, a pattern, a duration), since the loader resolves
// it before checking.
func (s Spec) JSONSchema() map[string]any {
	schema := objectSchema(s.Fields)
	if s.Summary != "" {
		schema["description"] = s.Summary
	}
	return schema
}

func objectSchema(fields []Field) map[string]any {
	properties := map[string]any{}
	var required []string
	for _, f := range fields {
		properties[f.Name] = f.jsonSchema()
		if f.Required {
			required = append(required, f.Name)
		}
	}
	schema := map[string]any{"type": "object", "properties": properties, "additionalProperties": false}
	if len(required) > 0 {
		schema["required"] = required
	}
	return schema
}

// variable matches a string holding a ${VAR} reference.
const variable = `\$\{`

// durationPattern is what time.ParseDuration reads.
const durationPattern = `^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`

func (f Field) jsonSchema() map[string]any {
	var schema map[string]any
	switch f.Kind {
	case String:
		schema = map[string]any{"type": "string"}
		if f.Required {
			schema["minLength"] = 1
		}
		if f.MaxLength > 0 {
			schema["maxLength"] = f.MaxLength
		}
		if f.Pattern != "" {
			schema["pattern"] = "(?:" + f.Pattern + ")|" + variable
		}
		if len(f.Enum) > 0 {
			schema["anyOf"] = []any{map[string]any{"enum": f.Enum}, map[string]any{"pattern": variable}}
		}
	case Duration:
		schema = map[string]any{"type": "string", "pattern": "(?:" + durationPattern + ")|" + variable}
	case Int, Number:
		schema = map[string]any{"type": string(f.Kind)}
		if f.Range != nil {
			schema["minimum"] = f.Range.Min
			if !math.IsInf(f.Range.Max, 1) {
				schema["maximum"] = f.Range.Max
			}
		}
	case Bool:
		schema = map[string]any{"type": "boolean"}
	case List:
		schema = map[string]any{"type": "array", "items": map[string]any{"type": "string"}}
		if f.Required {
			schema["minItems"] = 1
		}
	case Map:
		schema = map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}}
	case Object:
		schema = objectSchema(f.Fields)
	}
	if meaning := f.Meaning(); meaning != "" {
		schema["description"] = meaning // limits included: an editor shows it on hover
	}
	if f.Default != nil {
		schema["default"] = f.Default
	}
	if f.Example != nil {
		schema["examples"] = []any{f.Example}
	}
	if f.Secret {
		schema["writeOnly"] = true
	}
	return schema
}
