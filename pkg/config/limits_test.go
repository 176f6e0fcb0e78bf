package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSizeCapRefusesAFileBeforeReadingIt(t *testing.T) {
	// A sparse file: 100 MB by its size, nothing on disk. Reading it would
	// take 100 MB of memory; the cap refuses it from its size alone.
	path := filepath.Join(t.TempDir(), "huge.json")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(100<<20))
	require.NoError(t, f.Close())

	_, err = LoadFile(path, nil, fakeTypes{})
	problems := problemsOf(t, err)
	require.Len(t, problems.List, 1)
	assert.Equal(t, path+": the file is 104857600 bytes, over the limit of 16 MiB (apply a file this large with pollctl apply -f, which has no size limit, and run the services without CONNECTORS_FILE; or raise CONFIG_MAX_BYTES)",
		problems.List[0].Message)

	_, err = LoadFile(path, MapEnv(map[string]string{"CONFIG_MAX_BYTES": "1KiB"}), fakeTypes{})
	assert.Contains(t, err.Error(), "over the limit of 1 KiB")
}

func TestSizeCapIsConfigurable(t *testing.T) {
	file := one(`"name": "a", "type": "alpha", "labels": {"pad": "` + strings.Repeat("x", 4000) + `"}`)
	_, err := Parse([]byte(file), MapEnv(map[string]string{"CONFIG_MAX_BYTES": "2048"}), fakeTypes{})
	assert.Contains(t, err.Error(), "over the limit of 2 KiB")
	_, err = Parse([]byte(file), MapEnv(map[string]string{"CONFIG_MAX_BYTES": "1MiB"}), fakeTypes{})
	assert.NoError(t, err)

	for _, bad := range []string{"lots", "0", "-5", "10", "1TiB"} {
		_, err = Parse([]byte(file), MapEnv(map[string]string{"CONFIG_MAX_BYTES": bad}), fakeTypes{})
		assert.ErrorContains(t, err, "CONFIG_MAX_BYTES=", bad)
	}
}

func TestDepthCapIsCheckedBeforeParsing(t *testing.T) {
	// The file that took 277 MB to validate: 20 KB nested 9,990 deep.
	deep := one(`"name": "a", "type": "alpha", "config": ` + strings.Repeat(`{"a":`, 9_990) + "1" + strings.Repeat("}", 9_990))
	_, err := Parse([]byte(deep), nil, fakeTypes{})
	problems := problemsOf(t, err)
	require.Len(t, problems.List, 1)
	assert.Equal(t, "connectors.json: nests deeper than 100 levels at line 1, column 543 (flatten it, or raise CONFIG_MAX_DEPTH)", problems.List[0].Message)

	// Brackets inside strings do not count.
	inString := one(`"name": "a", "type": "alpha", "labels": {"x": "` + strings.Repeat("[{", 500) + `"}`)
	_, err = Parse([]byte(inString), nil, fakeTypes{})
	assert.NoError(t, err)

	// A deeper config is accepted when the limit is raised for it.
	nested := one(`"name": "a", "type": "alpha", "config": ` + strings.Repeat(`{"a":`, 150) + "1" + strings.Repeat("}", 150))
	_, err = Parse([]byte(nested), nil, fakeTypes{})
	assert.ErrorContains(t, err, "nests deeper than 100 levels")
	_, err = Parse([]byte(nested), MapEnv(map[string]string{"CONFIG_MAX_DEPTH": "200"}), fakeTypes{})
	assert.NoError(t, err)
}

func TestInvalidUTF8IsRejectedWithItsPath(t *testing.T) {
	file := "{\"connectors\": [\n" +
		"{\"name\": \"a\", \"type\": \"alpha\", \"labels\": {\"team\": \"w\xffx\"}},\n" +
		"{\"name\": \"b\", \"type\": \"alpha\", \"config\": {\"list\": [\"ok\", \"\xc3\"], \"k\xfe\": 1}}]}"
	_, err := Parse([]byte(file), nil, fakeTypes{})
	problems := problemsOf(t, err)
	var got []string
	for _, p := range problems.List {
		got = append(got, p.String())
	}
	assert.Equal(t, []string{
		"connectors[0].labels.team: is not valid UTF-8 (line 2, column 51: save the file as UTF-8)",
		"connectors[1].config.list[1]: is not valid UTF-8 (line 3, column 58: save the file as UTF-8)",
		"connectors[1].config: has a key that is not valid UTF-8 (line 3, column 64: save the file as UTF-8)",
	}, got)

	_, err = Parse([]byte(one(`"name": "a", "type": "alpha", "labels": {"t": "${BAD}"}`)), MapEnv(map[string]string{"BAD": "x\xff"}), fakeTypes{})
	assert.ErrorContains(t, err, "connectors[0].labels.t: environment variable BAD is not valid UTF-8 (set it to text)")
}

func TestConnectorConfigVariableIsCapped(t *testing.T) {
	env := map[string]string{"CONNECTOR_TYPE": "alpha", "CONNECTOR_NAME": "dev",
		"CONNECTOR_CONFIG": strings.Repeat("[", 200) + strings.Repeat("]", 200)}
	_, _, err := Load(MapEnv(env), fakeTypes{})
	assert.ErrorContains(t, err, "CONNECTOR_CONFIG: nests deeper than 100 levels")

	env["CONNECTOR_CONFIG"] = fmt.Sprintf(`{"pad": %q}`, strings.Repeat("x", 2048))
	env["CONFIG_MAX_BYTES"] = "1KiB"
	_, _, err = Load(MapEnv(env), fakeTypes{})
	assert.ErrorContains(t, err, "CONNECTOR_CONFIG: the value is 2059 bytes, over the limit of 1 KiB")
}
