package builtin_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
)

// shippedSchema compiles docs/connectors.schema.json as an editor would:
// draft 2020-12, itself checked against the meta-schema.
func shippedSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", "..", "..", "docs", "connectors.schema.json"))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	schema, err := c.Compile(path)
	require.NoError(t, err, "docs/connectors.schema.json is a valid JSON Schema")
	return schema
}

func validate(t *testing.T, schema *jsonschema.Schema, file []byte) error {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(file))
	require.NoError(t, err)
	return schema.Validate(doc)
}

// testEnv resolves every ${VAR} to a plausible secret, as a deployment
// would: the values are not what is checked.
var testEnv = config.Env(func(key string) (string, bool) {
	switch {
	case strings.HasPrefix(key, "CONFIG_MAX_"): // the loader's own limits: their defaults
		return "", false
	case strings.HasSuffix(key, "_INTERVAL"):
		return "5m", true
	}
	return "test-" + strings.ToLower(key), true
})

// TestSchemaTakesEveryValidConfig: the configs we ship and show validate
// against the schema, as they load.
func TestSchemaTakesEveryValidConfig(t *testing.T) {
	schema := shippedSchema(t)
	registry := builtin.Registry()
	files := map[string][]byte{}
	for _, path := range []string{"connectors.json", "deploy/helm/pollgrid/files/connectors.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", path))
		require.NoError(t, err)
		files[path] = b
	}
	for _, typeName := range registry.Types() {
		readme, err := os.ReadFile(filepath.Join("..", typeName, "README.md"))
		require.NoError(t, err)
		for _, s := range readmeSamples(t, typeName, string(readme)) {
			var entry struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(s.entry, &entry) != nil || entry.Type != typeName {
				continue // data, or a stand-in for another type's README
			}
			files[typeName+" "+s.where] = []byte(`{"connectors": [` + string(s.entry) + `]}`)
		}
		conf, ok := conformance[typeName]
		require.True(t, ok)
		entry := fmt.Sprintf(`{"name": "conformance", "type": %q, "config": %s}`, typeName, conf.Config("http://127.0.0.1:8080"))
		files[typeName+" conformance config"] = []byte(`{"connectors": [` + entry + `]}`)
	}
	files["a file naming its schema"] = []byte(`{"$schema": "./docs/connectors.schema.json", "connectors": [
		{"name": "quakes", "type": "usgs-earthquakes", "interval": "${QUAKES_INTERVAL}", "config": {"feed": "all_hour"}}]}`)
	for where, file := range files {
		t.Run(where, func(t *testing.T) {
			_, err := config.Parse(file, testEnv, registry)
			require.NoError(t, err, "it loads")
			assert.NoError(t, validate(t, schema, file), "it validates against docs/connectors.schema.json")
		})
	}
}

// TestSchemaRefusesWhatTheLoaderRefuses: known-bad files fail both the
// schema and the loader, so an editor flags them before a worker does.
func TestSchemaRefusesWhatTheLoaderRefuses(t *testing.T) {
	schema := shippedSchema(t)
	registry := builtin.Registry()
	entry := func(fields string) string { return `{"connectors": [{"name": "a", ` + fields + `}]}` }
	quakes := `"type": "usgs-earthquakes", "config": {"feed": "all_hour"}`
	tests := []struct{ name, file string }{
		{"no connectors", `{"connectors": []}`},
		{"an unknown top-level field", `{"connectors": [{"name": "a", ` + quakes + `}], "version": 2}`},
		{"an unknown connector field", entry(quakes + `, "intreval": "5m"`)},
		{"an unknown type", entry(`"type": "weather-nooa", "config": {}`)},
		{"no type", entry(`"config": {"feed": "all_hour"}`)},
		{"a name that is not a subject token", `{"connectors": [{"name": "Noaa CA", ` + quakes + `}]}`},
		{"an interval that is a number", entry(quakes + `, "interval": 60`)},
		{"an interval that is not a duration", entry(quakes + `, "interval": "5"`)},
		{"too many retries", entry(quakes + `, "retries": {"max": 11}`)},
		{"seen_cap 0", entry(quakes + `, "seen_cap": 0`)},
		{"a label that is not a string", entry(quakes + `, "labels": {"team": 1}`)},
		{"a required config field left out", entry(`"type": "usgs-earthquakes", "config": {}`)},
		{"a config left out whose type requires fields", entry(`"type": "usgs-earthquakes"`)},
		{"an unknown config field", entry(`"type": "github-releases", "config": {"owner": "o", "repo": "r", "include_draft": true}`)},
		{"a config field of the wrong kind", entry(`"type": "feed", "config": {"url": "https://example.com/rss", "max_items": "5"}`)},
		{"a config number out of range", entry(`"type": "github-issues", "config": {"owner": "o", "repo": "r", "per_page": 101}`)},
		{"a config choice that is not one", entry(`"type": "github-issues", "config": {"owner": "o", "repo": "r", "state": "merged"}`)},
		{"a nested config choice that is not one", entry(`"type": "http-json", "config": {"url": "https://h.example", "items": ".", "id": ".id", "pagination": {"style": "links"}}`)},
		{"a config pattern not matched", entry(`"type": "usgs-earthquakes", "config": {"feed": "all_year"}`)},
		{"allow_hosts not a list", entry(`"type": "usgs-earthquakes", "config": {"feed": "all_hour", "allow_hosts": "10.0.0.0/8"}`)},
		{"$schema not a string", `{"$schema": 1, "connectors": [{"name": "a", ` + quakes + `}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.file), testEnv, registry)
			require.Error(t, err, "the loader refuses it")
			assert.Error(t, validate(t, schema, []byte(tt.file)), "the schema refuses it")
		})
	}
}
