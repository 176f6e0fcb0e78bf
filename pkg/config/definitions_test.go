package config

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A file is checked as written and its entries kept as written: ${VAR}
// references unresolved whatever the environment holds, JSON compacted,
// budgets by name.
func TestParseDefinitionsKeepsWhatWasWritten(t *testing.T) {
	t.Setenv("TOKEN", "s3cret")
	data := []byte(`{"budgets": {"z": {"limit": 5, "per": "1m"}, "a": {"limit": 1, "per": "1s"}},
	  "connectors": [
	    {"name": "b", "type": "beta", "config": {"url": "https://x", "token": "${TOKEN}"}},
	    {"name": "a", "type": "alpha", "enabled": false, "budget": "a"}]}`)
	defs, err := ParseDefinitions("f.json", data, fakeTypes{})
	require.NoError(t, err)
	require.Len(t, defs.Connectors, 2)
	assert.Equal(t, "b", defs.Connectors[0].Name, "file order")
	assert.Equal(t, `{"name":"b","type":"beta","config":{"url":"https://x","token":"${TOKEN}"}}`, string(defs.Connectors[0].Value))
	assert.Equal(t, 1, defs.Enabled)
	require.Len(t, defs.Budgets, 2)
	assert.Equal(t, "a", defs.Budgets[0].Name)
	assert.Equal(t, `{"limit":1,"per":"1s"}`, string(defs.Budgets[0].Value))
	assert.NotContains(t, string(defs.Connectors[0].Value), "s3cret")
}

// A file of more than the services' 16 MiB cap can be applied: the catalog
// holds one definition per key.
func TestParseDefinitionsHasNoFileSizeCap(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"connectors": [`)
	for i := 0; b.Len() < DefaultMaxBytes+1024; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"name": "c-` + strings.Repeat("x", 40) + `-` + strconv.Itoa(i) + `", "type": "alpha", "labels": {"team": "` + strings.Repeat("y", 80) + `"}}`)
	}
	b.WriteString(`]}`)
	defs, err := ParseDefinitions("big.json", []byte(b.String()), fakeTypes{})
	require.NoError(t, err)
	assert.Greater(t, len(defs.Connectors), 70_000)
}

// Every problem of a file is reported, as by Parse, and nothing returned.
func TestParseDefinitionsReportsEveryProblem(t *testing.T) {
	_, err := ParseDefinitions("f.json", []byte(`{"connectors": [
	    {"name": "a", "type": "alpha", "interval": "5"},
	    {"name": "a", "type": "nope", "budget": "gone"}]}`), fakeTypes{})
	problems := problemsOf(t, err)
	assert.GreaterOrEqual(t, len(problems.List), 3, problems.Error())
	assert.Contains(t, err.Error(), "connectors[0].interval")
	assert.Contains(t, err.Error(), `connectors[1].name: "a" is already used`)
	assert.Contains(t, err.Error(), `connectors[1].budget: "gone" names no budget`)
}

// A worker resolves a stored definition's ${VAR} from its environment: an
// unset one fails with the variable's name, never a value; its budget is
// linked from the budgets it is given.
func TestParseConnector(t *testing.T) {
	value := []byte(`{"name": "b", "type": "beta", "interval": "30s", "budget": "gh", "config": {"url": "https://x", "token": "${TOKEN}"}}`)
	budgets := map[string]Budget{"gh": {Name: "gh", Limit: 60, Per: time.Minute, Burst: 5, Connectors: 3}}

	c, err := ParseConnector("definition of b (revision 7)", value, MapEnv(map[string]string{"TOKEN": "s3cret"}), fakeTypes{}, budgets)
	require.NoError(t, err)
	assert.Equal(t, 30*time.Second, c.Interval)
	assert.JSONEq(t, `{"url": "https://x", "token": "s3cret"}`, string(c.Config))
	assert.Equal(t, budgets["gh"], c.Budget)

	_, err = ParseConnector("definition of b (revision 7)", value, MapEnv(nil), fakeTypes{}, budgets)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "definition of b (revision 7)")
	assert.Contains(t, err.Error(), "environment variable TOKEN is not set")

	_, err = ParseConnector("definition of b", value, MapEnv(map[string]string{"TOKEN": "s3cret"}), fakeTypes{}, map[string]Budget{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `budget: "gh" names no budget`)

	// Without budgets (the catalog's index), the budget keeps its name only.
	c, err = ParseConnector("definition of b", value, Unresolved, fakeTypes{}, nil)
	require.NoError(t, err)
	assert.Equal(t, Budget{Name: "gh"}, c.Budget)

	_, err = ParseConnector("definition of b", []byte(`{"name": "b", "type": "beta", "config": {"url": "http://x?k=${TOKEN}"}}`),
		MapEnv(map[string]string{"TOKEN": "s3cret"}), fakeTypes{}, nil)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret", "a resolved value never reaches an error")
}

func TestParseBudget(t *testing.T) {
	b, err := ParseBudget("definition of budget gh", "gh", []byte(`{"limit": 60, "per": "1m", "burst": 5}`))
	require.NoError(t, err)
	assert.Equal(t, Budget{Name: "gh", Limit: 60, Per: time.Minute, Burst: 5}, b)
	_, err = ParseBudget("definition of budget gh", "gh", []byte(`{"limit": 0, "per": "1m"}`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "limit")
}

// What a process applies at start: a whole file (pruning), one connector
// of it (CONNECTOR_NAME), one from CONNECTOR_* (as written), or nothing
// when no file is named and ./connectors.json does not exist.
func TestLoadDefinitions(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "c.json", twoConnectors)

	defs, whole, source, err := LoadDefinitions(MapEnv(map[string]string{"CONNECTORS_FILE": path}), fakeTypes{})
	require.NoError(t, err)
	assert.True(t, whole)
	assert.Len(t, defs.Connectors, 2)
	assert.Equal(t, path+" (2 connectors)", source)

	defs, whole, _, err = LoadDefinitions(MapEnv(map[string]string{"CONNECTORS_FILE": path, "CONNECTOR_NAME": "b"}), fakeTypes{})
	require.NoError(t, err)
	assert.False(t, whole, "one connector of a file is not the whole set")
	require.Len(t, defs.Connectors, 1)
	assert.Equal(t, "b", defs.Connectors[0].Name)
	assert.Contains(t, string(defs.Connectors[0].Value), `"enabled":true`, "a connector asked for by name runs even if the file disables it")

	defs, whole, source, err = LoadDefinitions(MapEnv(map[string]string{
		"CONNECTOR_TYPE": "beta", "CONNECTOR_NAME": "dev", "CONNECTOR_INTERVAL": "5s",
		"CONNECTOR_CONFIG": `{"url": "https://x", "token": "${TOKEN}"}`, "TOKEN": "tok-env",
	}), fakeTypes{})
	require.NoError(t, err)
	assert.False(t, whole)
	assert.Equal(t, EnvSource, source)
	require.Len(t, defs.Connectors, 1)
	assert.JSONEq(t, `{"name": "dev", "type": "beta", "interval": "5s", "config": {"url": "https://x", "token": "${TOKEN}"}}`, string(defs.Connectors[0].Value))

	t.Chdir(t.TempDir())
	defs, _, source, err = LoadDefinitions(MapEnv(nil), fakeTypes{})
	require.NoError(t, err)
	assert.Nil(t, defs)
	assert.Contains(t, source, "the catalog only")

	_, _, _, err = LoadDefinitions(MapEnv(map[string]string{"CONNECTORS_FILE": dir + "/nope.json"}), fakeTypes{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nope.json")

	// A process's own file stays capped: it must never take a service down.
	big := writeFile(t, dir, "big.json", `{"connectors": [{"name": "a", "type": "alpha", "labels": {"x": "`+strings.Repeat("y", 2000)+`"}}]}`)
	_, _, _, err = LoadDefinitions(MapEnv(map[string]string{"CONNECTORS_FILE": big, "CONFIG_MAX_BYTES": "1KiB"}), fakeTypes{})
	problems := problemsOf(t, err)
	assert.Contains(t, problems.Error(), "over the limit of 1 KiB")
	assert.Contains(t, problems.Error(), "pollctl apply -f")
}

// Connectors the catalog holds unchanged are not checked again, but still
// count for what spans the file: a name used twice, a budget named.
func TestParseDefinitionsKnownSkipsWhatIsUnchanged(t *testing.T) {
	data := []byte(`{"budgets": {"gh": {"limit": 5, "per": "1m"}}, "connectors": [
	    {"name": "old", "type": "beta", "budget": "gh"},
	    {"name": "new", "type": "beta", "config": {"url": "https://x"}}]}`)
	// "old" has no url: beta refuses it, unless it is known unchanged.
	_, err := ParseDefinitions("f.json", data, fakeTypes{})
	require.Error(t, err)
	known := func(name string, written []byte) bool {
		return name == "old" && string(written) == `{"name":"old","type":"beta","budget":"gh"}`
	}
	defs, err := ParseDefinitionsKnown("f.json", data, fakeTypes{}, known)
	require.NoError(t, err)
	require.Len(t, defs.Connectors, 2)
	assert.Equal(t, `{"name":"old","type":"beta","budget":"gh"}`, string(defs.Connectors[0].Value))
	assert.Equal(t, 2, defs.Enabled)

	_, err = ParseDefinitionsKnown("f.json", []byte(`{"connectors": [
	    {"name": "old", "type": "beta", "budget": "gh"},
	    {"name": "old", "type": "alpha"}]}`), fakeTypes{}, known)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `connectors[0].budget: "gh" names no budget`, "a known connector's budget must still be in the file")
	assert.Contains(t, err.Error(), `connectors[1].name: "old" is already used by connectors[0]`)
}
