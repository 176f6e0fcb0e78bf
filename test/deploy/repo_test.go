package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
)

// root is the repository's top folder, seen from test/deploy.
const root = "../.."

func repoPath(parts ...string) string { return filepath.Join(append([]string{root}, parts...)...) }

// goServices are the pollgrid binaries deployed, with the port each one's
// HTTP_ADDR must use (docs/connector-framework.md).
var goServices = map[string]string{"scheduler": "8081", "worker": "8082", "aggregator": "8080"}

// secretVars are the ${VAR} names connectors.json references.
func secretVars(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(repoPath("connectors.json"))
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`).FindAllStringSubmatch(string(data), -1) {
		seen[m[1]] = true
	}
	var out []string
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// loadConnectors validates the repository's connectors.json the way the
// services do, with every ${VAR} set to a placeholder.
func loadConnectors(t *testing.T, data []byte) *config.Config {
	t.Helper()
	env := map[string]string{}
	for _, v := range secretVars(t) {
		env[v] = "placeholder"
	}
	cfg, err := config.Parse(data, config.MapEnv(env), builtin.Registry())
	require.NoError(t, err, "connectors.json must be valid")
	return cfg
}

// longestPoll is the longest one poll of cfg can take: every attempt runs
// to its timeout and the backoff doubles between attempts (pkg/poll).
func longestPoll(cfg *config.Config) (time.Duration, string) {
	var longest time.Duration
	var name string
	for _, c := range cfg.Connectors {
		d := c.Timeout * time.Duration(c.Retries.Max+1)
		for i := 0; i < c.Retries.Max; i++ {
			d += c.Retries.Backoff << i
		}
		if d > longest {
			longest, name = d, c.Name
		}
	}
	return longest, name
}
