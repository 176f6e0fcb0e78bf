package connector_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

// everyKind has a field of every kind, to check configs against.
type everyKind struct {
	Name    string            `json:"name"`
	State   string            `json:"state,omitempty"`
	Key     string            `json:"key,omitempty"`
	Limit   *int              `json:"limit,omitempty"`
	Start   *int              `json:"start,omitempty"`
	Min     *float64          `json:"min,omitempty"`
	Wait    string            `json:"wait,omitempty"`
	On      *bool             `json:"on,omitempty"`
	Labels  []string          `json:"labels,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Paging  struct {
		Style string `json:"style,omitempty"`
	} `json:"paging"`
	Required []string `json:"required,omitempty"`
}

var everyKindSpec = connector.Spec{Summary: "Every kind of field.", Fields: []connector.Field{
	{Name: "name", Kind: connector.String, Required: true, Hint: `a name such as "x"`, Pattern: `^[a-z]+$`, MaxLength: 8, Description: "A name."},
	{Name: "state", Kind: connector.String, Enum: []string{"open", "closed", "all"}, Default: "all", Description: "Which | ones."},
	{Name: "key", Kind: connector.String, Secret: true, Description: `Write "${KEY}".`},
	connector.PageSize("limit", 30, 100, ""),
	{Name: "start", Kind: connector.Int, Range: connector.AtLeast(0), Default: 1},
	{Name: "min", Kind: connector.Number, Range: connector.Between(-10, 10), Example: 2.5, DefaultText: "none (keep all)"},
	{Name: "wait", Kind: connector.Duration},
	{Name: "on", Kind: connector.Bool, Default: true},
	{Name: "labels", Kind: connector.List},
	{Name: "headers", Kind: connector.Map},
	{Name: "paging", Kind: connector.Object, Description: "How to page.", Fields: []connector.Field{
		{Name: "style", Kind: connector.String, Enum: []string{"none", "link_header"}},
	}},
	{Name: "required", Kind: connector.List, Required: true, Hint: `write one or more, like ["a"]`},
}}

func (everyKind) Spec() connector.Spec { return everyKindSpec }
func (*everyKind) ApplyDefaults()      {}
func (everyKind) Validate() error      { return nil }

func newEveryKind(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	return connector.Build("every-kind", raw, deps, func(everyKind, connector.Deps) (connector.Connector, error) {
		return exampleConnector{}, nil
	})
}

func TestTheSpecChecksEveryKind(t *testing.T) {
	ok := `"name": "x", "required": ["a"]`
	tests := []struct {
		name string
		raw  string
		want []string // the whole error, one problem a line; none for a valid config
	}{
		{name: "valid", raw: `{` + ok + `, "state": "open", "key": "k", "limit": 100, "start": 0, "min": -2.5, "wait": "1m",
			"on": false, "labels": ["a"], "headers": {"A": "b"}, "paging": {"style": "none"}}`},
		{name: "nulls and empty optional strings are left out", raw: `{` + ok + `, "state": "", "key": null, "limit": null, "paging": null}`},
		{name: "required: absent, null, blank or empty", raw: `{"name": "  ", "required": []}`, want: []string{
			`config.name: required: a name such as "x"`,
			`config.required: required: write one or more, like ["a"]`}},
		{name: "unknown fields, with a guess when there is one", raw: `{` + ok + `, "stat": "all", "colour": 1, "paging": {"styel": "none"}}`, want: []string{
			`config.colour: unknown field (known: name, state, key, limit, start, min, wait, on, labels, headers, paging, required, allow_hosts)`,
			`config.stat: unknown field (did you mean "state"?)`,
			`config.paging.styel: unknown field (did you mean "style"?)`}},
		{name: "wrong kinds", raw: `{"name": 1, "required": "a", "state": true, "limit": "3", "min": [], "wait": 30, "on": "yes",
			"labels": ["a", 2], "headers": {"A": null}, "paging": "none"}`, want: []string{
			`config.name: must be a string, not a number`,
			`config.state: must be a string, not true/false`,
			`config.limit: must be a whole number, not a string`,
			`config.min: must be a number, not a list`,
			`config.wait: must be a duration such as "30s", not a number`,
			`config.on: must be true or false, not a string`,
			`config.labels[1]: must be a string, not a number`,
			`config.headers.A: must be a string, not null`,
			`config.paging: must be an object, not a string`,
			`config.required: must be a list of strings, like ["a", "b"], not a string`}},
		{name: "numbers out of range", raw: `{` + ok + `, "limit": 101, "start": -1, "min": 10.5}`, want: []string{
			`config.limit: 101 is out of range (write a number from 1 to 100; default 30)`,
			`config.start: -1 is out of range (write a number of 0 or more; default 1)`,
			`config.min: 10.5 is out of range (write a number from -10 to 10, e.g. 2.5)`}},
		{name: "not a whole number", raw: `{` + ok + `, "limit": 1.5}`, want: []string{`config.limit: 1.5 is not a whole number`}},
		{name: "not a choice, with the fix when only the case is wrong", raw: `{` + ok + `, "state": "Open", "paging": {"style": "links"}}`, want: []string{
			`config.state: "Open" is not a valid state (write "open"; default "all")`,
			`config.paging.style: "links" is not a valid style (write "none" or "link_header")`}},
		{name: "not a duration", raw: `{` + ok + `, "wait": "5"}`, want: []string{
			`config.wait: "5" is not a duration (write a Go duration such as "30s", "5m" or "1h30m")`}},
		{name: "a secret as written: one ${VAR} reference, the worker resolves it", raw: `{` + ok + `, "key": "${KEY}"}`},
		{name: "a secret with a reference and more", raw: `{` + ok + `, "key": "Bearer ${KEY}"}`, want: []string{
			`config.key: contains whitespace or control characters (often a trailing newline in the environment variable, or a "Bearer " prefix: write the secret alone)`}},
		{name: "a secret with a newline is never quoted", raw: `{` + ok + `, "key": "SECRET\n"}`, want: []string{
			`config.key: contains whitespace or control characters (often a trailing newline in the environment variable, or a "Bearer " prefix: write the secret alone)`}},
		{name: "allow_hosts first, then the spec", raw: `{"name": 1, "required": ["a"], "allow_hosts": 3}`, want: []string{
			`config.allow_hosts: must be a list of hosts, addresses or CIDRs, like ["api.internal", "10.0.0.0/8"]`,
			`config.name: must be a string, not a number`}},
	}
	r := connector.NewRegistry()
	r.Register("every-kind", newEveryKind)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newEveryKind(json.RawMessage(tt.raw), connector.Deps{})
			// A config file's checker hands over the tree it decoded: the
			// same problems, in the same order.
			var decoded map[string]any
			dec := json.NewDecoder(strings.NewReader(tt.raw))
			dec.UseNumber()
			require.NoError(t, dec.Decode(&decoded))
			decodedErr := r.ValidateDecoded("every-kind", json.RawMessage(tt.raw), decoded)
			if len(tt.want) == 0 {
				require.NoError(t, err)
				require.NoError(t, decodedErr)
				return
			}
			require.Error(t, err)
			assert.Equal(t, strings.Join(tt.want, "\n"), err.Error())
			assert.NotContains(t, err.Error(), "SECRET")
			require.Error(t, decodedErr)
			assert.Equal(t, err.Error(), decodedErr.Error())
		})
	}
}

func TestRegistrySpec(t *testing.T) {
	r := connector.NewRegistry()
	r.Register("every-kind", newEveryKind)
	r.Register("plain", func(json.RawMessage, connector.Deps) (connector.Connector, error) { return exampleConnector{}, nil })

	spec, ok := r.Spec("every-kind")
	require.True(t, ok)
	assert.Equal(t, "Every kind of field.", spec.Summary)
	last := spec.Fields[len(spec.Fields)-1]
	assert.Equal(t, connector.AllowHosts.Name, last.Name, "every type's spec ends with the shared allow_hosts")
	assert.Len(t, spec.Fields, len(everyKindSpec.Fields)+1)
	f, ok := spec.Lookup("paging.style")
	require.True(t, ok)
	assert.Equal(t, []string{"none", "link_header"}, f.Enum)

	_, ok = r.Spec("plain")
	assert.False(t, ok, "a factory not written with Build has no spec")
	_, ok = r.Spec("nosuch")
	assert.False(t, ok)
}

func TestSpecTable(t *testing.T) {
	spec := connector.Spec{Fields: []connector.Field{
		everyKindSpec.Fields[0], everyKindSpec.Fields[1], everyKindSpec.Fields[3], everyKindSpec.Fields[5], everyKindSpec.Fields[10],
		{Name: "since", Kind: connector.String, Description: "Where to start."},
	}}
	assert.Equal(t, "| field | default | meaning |\n|---|---|---|\n"+
		"| `name` | **required** | A name. |\n"+
		"| `state` | `\"all\"` | Which \\| ones. One of `open`, `closed` or `all`. |\n"+
		"| `limit` | `30` | How many items one request asks for. From 1 to 100. |\n"+
		"| `min` | none (keep all) | From -10 to 10. |\n"+
		"| `paging` | — | How to page. |\n"+
		"| `paging.style` | — | One of `none` or `link_header`. |\n"+
		"| `since` | — | Where to start. |\n", spec.Table())
}

func TestSpecJSONSchema(t *testing.T) {
	got, err := json.Marshal(everyKindSpec.WithShared().JSONSchema())
	require.NoError(t, err)
	var schema map[string]any
	require.NoError(t, json.Unmarshal(got, &schema))
	assert.Equal(t, "Every kind of field.", schema["description"])
	assert.Equal(t, false, schema["additionalProperties"], "unknown fields are refused, as Build refuses them")
	assert.Equal(t, []any{"name", "required"}, schema["required"])
	props := schema["properties"].(map[string]any)
	assert.JSONEq(t, `{"type": "string", "minLength": 1, "maxLength": 8, "pattern": "(?:^[a-z]+$)|\\$\\{", "description": "A name."}`, jsonOf(t, props["name"]))
	assert.JSONEq(t, `{"type": "string", "anyOf": [{"enum": ["open", "closed", "all"]}, {"pattern": "\\$\\{"}], "default": "all", "description": "Which | ones. One of `+"`open`, `closed` or `all`"+`."}`, jsonOf(t, props["state"]))
	assert.JSONEq(t, `{"type": "string", "writeOnly": true, "description": "Write \"${KEY}\"."}`, jsonOf(t, props["key"]))
	assert.JSONEq(t, `{"type": "integer", "minimum": 1, "maximum": 100, "default": 30, "description": "How many items one request asks for. From 1 to 100."}`, jsonOf(t, props["limit"]))
	assert.JSONEq(t, `{"type": "integer", "minimum": 0, "default": 1, "description": "0 or more."}`, jsonOf(t, props["start"]))
	assert.JSONEq(t, `{"type": "number", "minimum": -10, "maximum": 10, "examples": [2.5], "description": "From -10 to 10."}`, jsonOf(t, props["min"]))
	assert.JSONEq(t, `{"type": "object", "additionalProperties": {"type": "string"}}`, jsonOf(t, props["headers"]))
	assert.JSONEq(t, `{"type": "object", "additionalProperties": false, "description": "How to page.",
		"properties": {"style": {"type": "string", "anyOf": [{"enum": ["none", "link_header"]}, {"pattern": "\\$\\{"}],
			"description": "One of `+"`none` or `link_header`"+`."}}}`, jsonOf(t, props["paging"]))
	assert.Contains(t, props, "allow_hosts")
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
