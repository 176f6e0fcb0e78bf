package config

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

// Specs is what Schema needs to know of the connector types.
// *connector.Registry implements it.
type Specs interface {
	// Types lists the registered types, sorted.
	Types() []string
	// Spec is a type's config Spec, with the fields every type shares.
	Spec(typeName string) (connector.Spec, bool)
}

// Schema returns the JSON Schema (draft 2020-12) of a connectors file: the
// fields of a connector (EntrySpec), and per type, chosen by its "type",
// the fields of its "config" (the type's Spec). An editor given it checks
// and completes a file as it is written: point VS Code's json.schemas
// setting, or the file's "$schema", at it. It says what the spec says;
// the loader checks more (a name used twice, a timeout longer than the
// interval, a type's own rules).
func Schema(types Specs) ([]byte, error) {
	entry := entrySpec.JSONSchema()
	properties := entry["properties"].(map[string]any)
	typeField, _ := entrySpec.Lookup("type")
	names := types.Types()
	properties["type"] = map[string]any{"type": "string", "enum": names, "description": typeField.Description,
		"examples": []any{typeField.Example}}
	configField, _ := entrySpec.Lookup("config")
	properties["config"] = map[string]any{"type": "object", "description": configField.Description}

	defs := map[string]any{"connector": entry, "budget": budgetSpec.JSONSchema()}
	var perType []any
	for _, name := range names {
		spec, ok := types.Spec(name)
		if !ok {
			return nil, fmt.Errorf("schema: connector type %q has no config spec (write its Config's Spec method)", name)
		}
		defs[name] = spec.JSONSchema()
		then := map[string]any{"properties": map[string]any{"config": map[string]any{"$ref": "#/$defs/" + name}}}
		if requiresAny(spec.Fields) {
			then["required"] = []string{"config"}
		}
		perType = append(perType, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"type": map[string]any{"const": name}}, "required": []string{"type"}},
			"then": then,
		})
	}
	entry["allOf"] = perType

	file := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"title":       "pollgrid connectors.json",
		"description": "The connectors pollgrid polls. Generated from the config specs in Go (make docs); pollctl schema prints it.",
		"type":        "object",
		"properties": map[string]any{
			schemaKey: map[string]any{"type": "string",
				"description": "The URL or path of this schema, for editors; pollgrid only checks that it is a string."},
			"budgets": map[string]any{"type": "object", "additionalProperties": map[string]any{"$ref": "#/$defs/budget"},
				"propertyNames": map[string]any{"pattern": namePattern, "maxLength": maxNameLength},
				"description":   "Rate-limit budgets by name, shared across every worker by the connectors whose budget names them."},
			"connectors": map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"$ref": "#/$defs/connector"},
				"description": "The connectors, in the order problems are reported."},
		},
		"required":             []string{"connectors"},
		"additionalProperties": false,
		"$defs":                defs,
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // "<version>" reads better than "\u003cversion\u003e"
	enc.SetIndent("", "  ")
	if err := enc.Encode(file); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return out.Bytes(), nil
}

func requiresAny(fields []connector.Field) bool {
	for _, f := range fields {
		if f.Required {
			return true
		}
	}
	return false
}
