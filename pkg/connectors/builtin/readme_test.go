package builtin_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
)

// readmeSample is one config a connector README shows.
type readmeSample struct {
	where string // "README.md block 2", for the failure message
	entry json.RawMessage
}

// readmeSamples reads every ```json block of a README: a whole connectors.json
// entry (an object with a "type"), or a line or block that starts with
// "config": (a type-specific config on its own), made into an entry of the
// README's type.
func readmeSamples(t *testing.T, typeName, readme string) []readmeSample {
	t.Helper()
	var samples []readmeSample
	for i, block := range strings.Split(readme, "```json")[1:] {
		block, _, _ = strings.Cut(block, "```")
		where := fmt.Sprintf("README.md json block %d", i+1)
		trimmed := strings.TrimSpace(block)
		if !strings.HasPrefix(trimmed, `"config"`) {
			samples = append(samples, readmeSample{where: where, entry: json.RawMessage(trimmed)})
			continue
		}
		// One "config": {...} per line, or one spread over the block.
		parts := strings.Split(trimmed, "\n")
		if !strings.HasPrefix(strings.TrimSpace(parts[len(parts)-1]), `"config"`) {
			parts = []string{trimmed}
		}
		for j, part := range parts {
			entry := fmt.Sprintf(`{"name": "readme-sample-%d-%d", "type": %q, %s}`, i+1, j+1, typeName, part)
			samples = append(samples, readmeSample{where: fmt.Sprintf("%s, config %d", where, j+1), entry: json.RawMessage(entry)})
		}
	}
	return samples
}

// TestEveryREADMESampleLoads loads every config each connector README
// shows through the registry, as a worker loads connectors.json (with
// ${VAR}s resolved), so that a README can never show a config that fails.
func TestEveryREADMESampleLoads(t *testing.T) {
	registry := builtin.Registry()
	// Every ${VAR} resolves to a plausible secret: a README writes secrets as
	// references, and their values are not what is checked here.
	env := config.Env(func(key string) (string, bool) {
		if strings.HasPrefix(key, "CONFIG_MAX_") { // the loader's own limits: their defaults
			return "", false
		}
		return "readme-" + strings.ToLower(key), true
	})
	for _, typeName := range registry.Types() {
		t.Run(typeName, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("..", typeName, "README.md"))
			require.NoError(t, err, "every registered type has pkg/connectors/%s/README.md", typeName)
			samples := readmeSamples(t, typeName, string(raw))
			require.NotEmpty(t, samples, "the README shows no sample config: add a ```json block with a connectors.json entry")
			sawEntry := false
			for _, s := range samples {
				var entry struct {
					Type string `json:"type"`
				}
				require.NoError(t, json.Unmarshal(s.entry, &entry), "%s is not JSON: %s", s.where, s.entry)
				if entry.Type == "" {
					continue // a JSON example of data, not a config
				}
				sawEntry = sawEntry || !strings.HasPrefix(string(s.entry), `{"name": "readme-sample-`)
				if entry.Type != typeName {
					continue // a stand-in for another type's README is that type's to check
				}
				file := []byte(`{"connectors": [` + string(s.entry) + `]}`)
				_, err := config.Parse(file, env, registry)
				assert.NoError(t, err, "%s does not load:\n%s", s.where, s.entry)
			}
			assert.True(t, sawEntry, "the README shows no whole connectors.json entry of type %q", typeName)
		})
	}
}
