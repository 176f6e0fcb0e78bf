package builtin_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
)

// update rewrites the generated docs instead of comparing them: make docs
// (go generate ./connectors/builtin) runs this test with it.
var update = flag.Bool("update", false, "rewrite the docs generated from the config specs")

const fixDocs = "run `make docs` (or `go generate ./connectors/builtin` in pkg) and commit the result"

// generated is a part of a file the specs write, between two markers.
type generated struct {
	file       string // from the repository root
	begin, end string
	content    string
}

// TestGeneratedDocs keeps what the config specs describe equal to what the
// docs show: each connector README's field table, the config reference of
// docs/connector-framework.md, and docs/connectors.schema.json.
func TestGeneratedDocs(t *testing.T) {
	registry := builtin.Registry()
	var parts []generated
	for _, typeName := range registry.Types() {
		spec, ok := registry.Spec(typeName)
		require.True(t, ok, "%s has a config spec", typeName)
		parts = append(parts, generated{
			file:    filepath.Join("pkg", "connectors", typeName, "README.md"),
			begin:   "<!-- config fields: generated from the type's Spec by `make docs`; do not edit -->\n",
			end:     "<!-- end of config fields -->\n",
			content: spec.Table(),
		})
	}
	parts = append(parts, generated{
		file:    filepath.Join("docs", "connector-framework.md"),
		begin:   "<!-- connector fields: generated from config.EntrySpec by `make docs`; do not edit -->\n",
		end:     "<!-- end of connector fields -->\n",
		content: config.EntrySpec().Table(),
	})
	for _, part := range parts {
		t.Run(part.file, func(t *testing.T) {
			path := filepath.Join("..", "..", "..", part.file)
			doc, err := os.ReadFile(path)
			require.NoError(t, err)
			before, rest, found := strings.Cut(string(doc), part.begin)
			require.True(t, found, "%s has no line %q to put the generated table after", part.file, part.begin)
			_, after, found := strings.Cut(rest, part.end)
			require.True(t, found, "%s has no line %q after the generated table", part.file, part.end)
			want := before + part.begin + part.content + part.end + after
			if *update {
				require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
				return
			}
			assert.Equal(t, want, string(doc), "%s is not what the spec says: %s", part.file, fixDocs)
		})
	}

	t.Run("docs/connectors.schema.json", func(t *testing.T) {
		schema, err := config.Schema(registry)
		require.NoError(t, err)
		path := filepath.Join("..", "..", "..", "docs", "connectors.schema.json")
		if *update {
			require.NoError(t, os.WriteFile(path, schema, 0o644))
			return
		}
		shipped, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(schema, shipped), "docs/connectors.schema.json is not what the specs say: %s", fixDocs)
	})
}
