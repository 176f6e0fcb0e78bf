package builtin_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
	datadogevents "github.com/pollgrid/pollgrid/pkg/connectors/datadog-events"
	"github.com/pollgrid/pollgrid/pkg/connectors/demo"
	"github.com/pollgrid/pollgrid/pkg/connectors/feed"
	githubissues "github.com/pollgrid/pollgrid/pkg/connectors/github-issues"
	githubreleases "github.com/pollgrid/pollgrid/pkg/connectors/github-releases"
	httpjson "github.com/pollgrid/pollgrid/pkg/connectors/http-json"
	jiraissues "github.com/pollgrid/pollgrid/pkg/connectors/jira-issues"
	slackhistory "github.com/pollgrid/pollgrid/pkg/connectors/slack-history"
	usgsearthquakes "github.com/pollgrid/pollgrid/pkg/connectors/usgs-earthquakes"
	weathernoaa "github.com/pollgrid/pollgrid/pkg/connectors/weather-noaa"
)

// configType is a registered type's config struct, and a config in which
// every default the spec declares applies (most apply to {}).
type configType struct {
	config   connector.Configurable
	defaults string
}

// configTypes holds every registered type's config struct. A registered
// type without an entry fails TestSpecAndStructAgree: add yours here.
var configTypes = map[string]configType{
	weathernoaa.TypeName:     {config: &weathernoaa.Config{}},
	usgsearthquakes.TypeName: {config: &usgsearthquakes.Config{}},
	githubreleases.TypeName:  {config: &githubreleases.Config{}},
	githubissues.TypeName:    {config: &githubissues.Config{}},
	jiraissues.TypeName:      {config: &jiraissues.Config{}},
	feed.TypeName:            {config: &feed.Config{}},
	slackhistory.TypeName:    {config: &slackhistory.Config{}},
	datadogevents.TypeName:   {config: &datadogevents.Config{}},
	demo.TypeName:            {config: &demo.Config{}},
	// Pagination's start and max_pages default only with a style that uses them.
	httpjson.TypeName: {config: &httpjson.Config{}, defaults: `{"pagination": {"style": "page"}}`},
}

// TestSpecAndStructAgree holds every type's Spec to its config struct,
// both ways: every JSON field of the struct (embedded structs included)
// is a field of the spec of the kind its Go type decodes, and every field
// of the spec is one of the struct's; the defaults the spec declares are
// the ones ApplyDefaults sets, and ApplyDefaults sets no other.
func TestSpecAndStructAgree(t *testing.T) {
	registry := builtin.Registry()
	for _, typeName := range registry.Types() {
		t.Run(typeName, func(t *testing.T) {
			ct, ok := configTypes[typeName]
			require.True(t, ok, "add %s to configTypes in spec_test.go", typeName)
			spec := ct.config.Spec()
			registered, ok := registry.Spec(typeName)
			require.True(t, ok)
			assert.Equal(t, spec.WithShared(), registered, "the registry hands out the config's own spec")
			assert.NotEmpty(t, spec.Summary, "the spec says in a sentence what the type polls")

			structType := reflect.TypeOf(ct.config).Elem()
			assert.Equal(t, kindsOf(spec.Fields), jsonFields(t, structType),
				"the spec's fields (name: kind) are the struct's JSON fields, of the kinds their Go types decode")
			for _, f := range spec.Fields {
				assert.NotEqual(t, connector.AllowHosts.Name, f.Name, "allow_hosts is every type's: Build takes it, the spec leaves it out")
			}
			checkFields(t, "", spec.Fields)

			// Defaults: the config made of defaults, after ApplyDefaults.
			raw := ct.defaults
			if raw == "" {
				raw = "{}"
			}
			value := reflect.New(structType)
			require.NoError(t, json.Unmarshal([]byte(raw), value.Interface()))
			value.Interface().(connector.Configurable).ApplyDefaults()
			var written map[string]any
			require.NoError(t, json.Unmarshal([]byte(raw), &written))
			got := asJSON(t, value.Interface())
			checkDefaults(t, "", spec.Fields, got, written)
		})
	}
}

// checkFields holds each field to what the docs and messages need of it.
func checkFields(t *testing.T, prefix string, fields []connector.Field) {
	t.Helper()
	for _, f := range fields {
		path := prefix + f.Name
		assert.NotEmpty(t, f.Description, "%s has a description", path)
		if f.Required {
			assert.NotEmpty(t, f.Hint, "%s is required: its Hint ends the message saying so", path)
			assert.Nil(t, f.Default, "%s is required, so it has no default", path)
		}
		if f.Secret {
			assert.Contains(t, f.Description, "${", `%s is a secret: its description says to write it as "${VAR}"`, path)
		}
		if f.Default != nil && f.Range != nil {
			n, ok := f.Default.(int)
			assert.True(t, ok && float64(n) >= f.Range.Min && float64(n) <= f.Range.Max, "%s: its default is in its range", path)
		}
		if f.Default != nil && len(f.Enum) > 0 {
			assert.Contains(t, f.Enum, f.Default, "%s: its default is one of its choices", path)
		}
		checkFields(t, path+".", f.Fields)
	}
}

// checkDefaults compares, field by field, what ApplyDefaults left in the
// config (got, as JSON) with the spec's defaults, skipping the fields the
// config wrote.
func checkDefaults(t *testing.T, prefix string, fields []connector.Field, got, written map[string]any) {
	t.Helper()
	for _, f := range fields {
		path := prefix + f.Name
		if f.Kind == connector.Object {
			inner, _ := got[f.Name].(map[string]any)
			innerWritten, _ := written[f.Name].(map[string]any)
			checkDefaults(t, path+".", f.Fields, inner, innerWritten)
			continue
		}
		if _, ok := written[f.Name]; ok {
			continue
		}
		value, want := zeroAsNil(got[f.Name]), zeroAsNil(normalise(t, f.Default))
		if want == nil {
			assert.Nil(t, value, "%s: ApplyDefaults sets it to %v, which the spec does not declare (Default)", path, value)
			continue
		}
		assert.Equal(t, want, value, "%s: the spec's default and ApplyDefaults' differ", path)
	}
}

// zeroAsNil is nil for a JSON value that decodes as Go's zero value: a
// field left at it may be omitted, and a default of it changes nothing.
func zeroAsNil(v any) any {
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil
		}
	case bool:
		if !x {
			return nil
		}
	case float64:
		if x == 0 {
			return nil
		}
	case []any:
		if len(x) == 0 {
			return nil
		}
	case map[string]any:
		if len(x) == 0 {
			return nil
		}
	}
	return v
}

// jsonFields lists a struct's JSON fields as "name: kind", embedded
// structs' fields included, an object's fields after it.
func jsonFields(t *testing.T, typ reflect.Type) []string {
	t.Helper()
	var out []string
	for i := range typ.NumField() {
		sf := typ.Field(i)
		if sf.Anonymous {
			out = append(out, jsonFields(t, sf.Type)...)
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if !sf.IsExported() || name == "-" || name == "" {
			continue
		}
		ft := sf.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		var kind connector.Kind
		switch {
		case ft.Kind() == reflect.String:
			kind = connector.String
		case ft.Kind() == reflect.Int:
			kind = connector.Int
		case ft.Kind() == reflect.Float64:
			kind = connector.Number
		case ft.Kind() == reflect.Bool:
			kind = connector.Bool
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String:
			kind = connector.List
		case ft.Kind() == reflect.Map && ft.Key().Kind() == reflect.String && ft.Elem().Kind() == reflect.String:
			kind = connector.Map
		case ft.Kind() == reflect.Struct:
			out = append(out, name+": "+string(connector.Object))
			for _, inner := range jsonFields(t, ft) {
				out = append(out, name+"."+inner)
			}
			continue
		default:
			t.Errorf("field %s: no spec kind decodes into %s", name, sf.Type)
		}
		out = append(out, name+": "+string(kind))
	}
	slices.Sort(out)
	return out
}

// kindsOf lists the spec's fields as jsonFields lists the struct's. A
// duration is a string in Go.
func kindsOf(fields []connector.Field) []string {
	var out []string
	for _, f := range fields {
		kind := f.Kind
		if kind == connector.Duration {
			kind = connector.String
		}
		out = append(out, f.Name+": "+string(kind))
		for _, inner := range kindsOf(f.Fields) {
			out = append(out, f.Name+"."+inner)
		}
	}
	slices.Sort(out)
	return out
}

func asJSON(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// normalise makes a Go value what it would read back as from JSON.
func normalise(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var out any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}
