package builtin_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
)

// Every type accepts config.allow_hosts, through connector.Build, and
// reports a bad entry with its path like any other field.
func TestEveryTypeAcceptsAllowHosts(t *testing.T) {
	registry := builtin.Registry()
	env := config.Env(func(key string) (string, bool) {
		if strings.HasPrefix(key, "CONFIG_MAX_") { // the loader's own limits: their defaults
			return "", false
		}
		return "readme-" + strings.ToLower(key), true
	})
	for _, typeName := range registry.Types() {
		t.Run(typeName, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("..", typeName, "README.md"))
			require.NoError(t, err)
			var entry map[string]any
			for _, s := range readmeSamples(t, typeName, string(raw)) {
				if json.Unmarshal(s.entry, &entry) == nil && entry["type"] == typeName {
					break
				}
				entry = nil
			}
			require.NotNil(t, entry, "a README sample of %s", typeName)
			cfg, _ := entry["config"].(map[string]any)
			if cfg == nil {
				cfg = map[string]any{}
			}
			entry["config"] = cfg

			cfg["allow_hosts"] = []string{"10.0.0.0/8", "*.corp.example"}
			file, err := json.Marshal(map[string]any{"connectors": []any{entry}})
			require.NoError(t, err)
			_, err = config.Parse(file, env, registry)
			assert.NoError(t, err)

			cfg["allow_hosts"] = []string{"10.0.0.0/33"}
			file, err = json.Marshal(map[string]any{"connectors": []any{entry}})
			require.NoError(t, err)
			_, err = config.Parse(file, env, registry)
			assert.ErrorContains(t, err, `connectors[0].config: config.allow_hosts[0]: "10.0.0.0/33" is not a CIDR`)
		})
	}
}
