package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeTypes knows "alpha" (any config) and "beta" (needs an https "url";
// "pages", when set, positive), which lists every problem (errors.Join).
type fakeTypes struct{}

func (fakeTypes) Known(typeName string) bool { return typeName == "alpha" || typeName == "beta" }
func (fakeTypes) Types() []string            { return []string{"alpha", "beta"} }

func (fakeTypes) Validate(typeName string, raw json.RawMessage) error {
	if typeName != "beta" {
		return nil
	}
	var cfg struct {
		URL   string `json:"url"`
		Pages *int   `json:"pages"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return err
	}
	var errs []error
	switch {
	case cfg.URL == "":
		errs = append(errs, errors.New(`url: required (the API address, e.g. "https://api.example.com")`))
	case !strings.HasPrefix(cfg.URL, "https://"):
		// Echoes the value on purpose: Problems must redact it.
		errs = append(errs, fmt.Errorf("url %q must start with https://", cfg.URL))
	}
	if cfg.Pages != nil && *cfg.Pages <= 0 {
		errs = append(errs, fmt.Errorf("pages: %d must be 1 or more", *cfg.Pages))
	}
	return errors.Join(errs...)
}

// one wraps connector fields into a file with a single connector.
func one(fields string) string {
	return `{"connectors": [{` + fields + `}]}`
}

func problemsOf(t *testing.T, err error) *Problems {
	t.Helper()
	require.Error(t, err)
	var problems *Problems
	require.ErrorAs(t, err, &problems)
	return problems
}

func TestParseAppliesDefaults(t *testing.T) {
	cfg, err := Parse([]byte(one(`"name": "a", "type": "alpha"`)), nil, fakeTypes{})
	require.NoError(t, err)
	require.Len(t, cfg.Connectors, 1)

	assert.Equal(t, Connector{
		Name:     "a",
		Type:     "alpha",
		Enabled:  true,
		Interval: 60 * time.Second,
		Jitter:   0,
		Timeout:  10 * time.Second,
		Retries:  Retries{Max: 2, Backoff: time.Second},
		LeaseTTL: 2 * time.Second,
		SeenCap:  100_000,
		Config:   json.RawMessage("{}"),
	}, cfg.Connectors[0])
}

func TestParseDefaultTimeoutIsHalfAShortInterval(t *testing.T) {
	cfg, err := Parse([]byte(one(`"name": "a", "type": "alpha", "interval": "4s"`)), nil, fakeTypes{})
	require.NoError(t, err)
	assert.Equal(t, 2*time.Second, cfg.Connectors[0].Timeout)
}

func TestLoadFileReadsEveryField(t *testing.T) {
	env := MapEnv(map[string]string{"GITHUB_TOKEN": "ghp_abc123"})
	cfg, err := LoadFile("testdata/connectors.json", env, fakeTypes{})
	require.NoError(t, err)
	require.Len(t, cfg.Connectors, 2)

	noaa := cfg.Connectors[0]
	assert.Equal(t, "noaa-alerts-ca", noaa.Name)
	assert.True(t, noaa.Enabled)
	assert.Equal(t, 60*time.Second, noaa.Interval)
	assert.Equal(t, 5*time.Second, noaa.Jitter)
	assert.Equal(t, 10*time.Second, noaa.Timeout)
	assert.Equal(t, Retries{Max: 3, Backoff: 2 * time.Second}, noaa.Retries)
	assert.Equal(t, 30*time.Second, noaa.LeaseTTL, "as written in the file")
	assert.Equal(t, map[string]string{"team": "wx"}, noaa.Labels)
	assert.JSONEq(t, `{"area": "CA", "user_agent": "(pollgrid, ops@example.com)"}`, string(noaa.Config))

	github, ok := cfg.Lookup("github-nats-server")
	require.True(t, ok)
	assert.False(t, github.Enabled)
	assert.Equal(t, 5*time.Minute, github.Interval)
	assert.JSONEq(t, `{"url": "https://api.github.com", "token": "ghp_abc123"}`, string(github.Config))

	assert.Equal(t, []string{"noaa-alerts-ca"}, names(cfg.Enabled()))
	assert.Equal(t, []string{"ghp_abc123"}, cfg.Secrets())
	_, ok = cfg.Lookup("nope")
	assert.False(t, ok)
}

func names(conns []Connector) []string {
	var out []string
	for _, c := range conns {
		out = append(out, c.Name)
	}
	return out
}

// TestParseReportsEachRule checks every rule's path and fix text. Each
// case's connectors are otherwise valid, so the listed problems are all.
func TestParseReportsEachRule(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		want []Problem // Message is a substring of the reported message
	}{
		{"bare number duration string", one(`"name": "a", "type": "alpha", "interval": "5"`),
			nil, []Problem{{"connectors[0].interval", `"5" is not a duration (write "5s")`}}},
		{"JSON number duration", one(`"name": "a", "type": "alpha", "interval": 60`),
			nil, []Problem{{"connectors[0].interval", `60 is not a duration (write "60s")`}}},
		{"not a duration", one(`"name": "a", "type": "alpha", "jitter": "soon"`),
			nil, []Problem{{"connectors[0].jitter", `"soon" is not a duration (write a Go duration such as "30s", "5m" or "1h30m")`}}},
		{"duration of wrong JSON type", one(`"name": "a", "type": "alpha", "timeout": true`),
			nil, []Problem{{"connectors[0].timeout", `must be a duration such as "30s", not true/false`}}},
		{"name missing", one(`"type": "alpha"`),
			nil, []Problem{{"connectors[0].name", `required (a unique name such as "noaa-alerts-ca")`}}},
		{"name invalid", one(`"name": "Noaa CA", "type": "alpha"`),
			nil, []Problem{{"connectors[0].name", `"Noaa CA" is not a valid name (use lowercase letters, digits, "-" and "_")`}}},
		{"name not a string", one(`"name": 7, "type": "alpha"`),
			nil, []Problem{{"connectors[0].name", `must be a string, not a number`}}},
		{"name too long", one(`"name": "` + strings.Repeat("a", 65) + `", "type": "alpha"`),
			nil, []Problem{{"connectors[0].name", `is 65 characters long (at most 64)`}}},
		{"name used twice", `{"connectors": [{"name": "x", "type": "alpha"}, {"name": "y", "type": "alpha"}, {"name": "x", "type": "alpha"}]}`,
			nil, []Problem{{"connectors[2].name", `"x" is already used by connectors[0] (names must be unique)`}}},
		{"type missing", one(`"name": "a"`),
			nil, []Problem{{"connectors[0].type", `required (known: alpha, beta)`}}},
		{"type misspelt", one(`"name": "a", "type": "alpah"`),
			nil, []Problem{{"connectors[0].type", `unknown type "alpah" (known: alpha, beta); did you mean "alpha"?`}}},
		{"type unknown", one(`"name": "a", "type": "weather-noaa"`),
			nil, []Problem{{"connectors[0].type", `unknown type "weather-noaa" (known: alpha, beta)`}}},
		{"field misspelt", one(`"name": "a", "type": "alpha", "intreval": "5s"`),
			nil, []Problem{{"connectors[0].intreval", `unknown field (did you mean "interval"?)`}}},
		{"field unknown", one(`"name": "a", "type": "alpha", "colour": "red"`),
			nil, []Problem{{"connectors[0].colour", `unknown field (known: name, type, enabled, interval, adaptive, jitter, timeout, retries, lease_ttl, seen_cap, budget, labels, config)`}}},
		{"enabled not a bool", one(`"name": "a", "type": "alpha", "enabled": "yes"`),
			nil, []Problem{{"connectors[0].enabled", `must be true or false, not a string`}}},
		{"interval too short", one(`"name": "a", "type": "alpha", "interval": "500ms"`),
			nil, []Problem{{"connectors[0].interval", `500ms is too short (at least 1s)`}}},
		{"timeout not shorter than interval", one(`"name": "a", "type": "alpha", "interval": "60s", "timeout": "90s"`),
			nil, []Problem{{"connectors[0].timeout", `90s must be shorter than interval 60s`}}},
		{"timeout against default interval", one(`"name": "a", "type": "alpha", "timeout": "2m"`),
			nil, []Problem{{"connectors[0].timeout", `2m must be shorter than interval 1m`}}},
		{"timeout zero", one(`"name": "a", "type": "alpha", "timeout": "0s"`),
			nil, []Problem{{"connectors[0].timeout", `0s must be longer than 0`}}},
		{"jitter negative", one(`"name": "a", "type": "alpha", "jitter": "-1s"`),
			nil, []Problem{{"connectors[0].jitter", `-1s must not be negative`}}},
		{"jitter not shorter than interval", one(`"name": "a", "type": "alpha", "interval": "10s", "jitter": "10s"`),
			nil, []Problem{{"connectors[0].jitter", `10s must be shorter than interval 10s`}}},
		{"seen cap zero", one(`"name": "a", "type": "alpha", "seen_cap": 0`),
			nil, []Problem{{"connectors[0].seen_cap", `0 is out of range (1..10000000)`}}},
		{"seen cap not a number", one(`"name": "a", "type": "alpha", "seen_cap": "lots"`),
			nil, []Problem{{"connectors[0].seen_cap", `must be a number from 1 to 10000000, not a string`}}},
		{"lease ttl too short", one(`"name": "a", "type": "alpha", "lease_ttl": "500ms"`),
			nil, []Problem{{"connectors[0].lease_ttl", `500ms is too short (at least 1s)`}}},
		{"interval not whole seconds", one(`"name": "a", "type": "alpha", "interval": "1500ms"`),
			nil, []Problem{{"connectors[0].interval", `1500ms is not a whole number of seconds (ticks fire on whole seconds: write e.g. 2s)`}}},
		{"retries max too high", one(`"name": "a", "type": "alpha", "retries": {"max": 11}`),
			nil, []Problem{{"connectors[0].retries.max", `11 is out of range (0..10)`}}},
		{"retries max negative", one(`"name": "a", "type": "alpha", "retries": {"max": -1}`),
			nil, []Problem{{"connectors[0].retries.max", `-1 is out of range (0..10)`}}},
		{"retries max fractional", one(`"name": "a", "type": "alpha", "retries": {"max": 2.5}`),
			nil, []Problem{{"connectors[0].retries.max", `2.5 is not a whole number`}}},
		{"retries max quoted", one(`"name": "a", "type": "alpha", "retries": {"max": "3"}`),
			nil, []Problem{{"connectors[0].retries.max", `must be a number from 0 to 10, not a string`}}},
		{"retries backoff longer than interval", one(`"name": "a", "type": "alpha", "interval": "5s", "retries": {"backoff": "6s"}`),
			nil, []Problem{{"connectors[0].retries.backoff", `6s must not be longer than interval 5s`}}},
		{"retries backoff negative", one(`"name": "a", "type": "alpha", "retries": {"backoff": "-1s"}`),
			nil, []Problem{{"connectors[0].retries.backoff", `-1s must not be negative`}}},
		{"retries field misspelt", one(`"name": "a", "type": "alpha", "retries": {"maxx": 3}`),
			nil, []Problem{{"connectors[0].retries.maxx", `unknown field (did you mean "max"?)`}}},
		{"retries not an object", one(`"name": "a", "type": "alpha", "retries": 3`),
			nil, []Problem{{"connectors[0].retries", `must be an object like {"max": 3, "backoff": "2s"}, not a number`}}},
		{"label with empty key", one(`"name": "a", "type": "alpha", "labels": {"": "x"}`),
			nil, []Problem{{"connectors[0].labels", `has an empty key (label names must not be empty)`}}},
		{"label value not a string", one(`"name": "a", "type": "alpha", "labels": {"tier": 1}`),
			nil, []Problem{{"connectors[0].labels.tier", `must be a string, not a number`}}},
		{"config not an object", one(`"name": "a", "type": "alpha", "config": "area=CA"`),
			nil, []Problem{{"connectors[0].config", `must be an object with the settings of the connector type, not a string`}}},
		{"type's own validation", one(`"name": "a", "type": "beta", "config": {"token": "x"}`),
			nil, []Problem{{"connectors[0].config", `url: required (the API address, e.g. "https://api.example.com")`}}},
		{"type's validation sees defaults", one(`"name": "a", "type": "beta"`),
			nil, []Problem{{"connectors[0].config", `url: required`}}},
		{"connector not an object", `{"connectors": ["noaa"]}`,
			nil, []Problem{{"connectors[0]", `must be an object like {"name": "...", "type": "..."}, not a string`}}},
		{"top-level unknown field", `{"connectors": [{"name": "a", "type": "alpha"}], "version": 2}`,
			nil, []Problem{{"version", `unknown field (the file holds only "connectors", "budgets", and "$schema" for editors)`}}},
		{"$schema not a string", `{"$schema": 2, "connectors": [{"name": "a", "type": "alpha"}]}`,
			nil, []Problem{{"$schema", `must be a string: the URL or path of the JSON Schema, for editors (pollctl schema prints it), not a number`}}},
		{"duplicate field in a connector", one(`"name": "a", "type": "alpha", "interval": "5s",` + "\n" + `"interval": "6s"`),
			nil, []Problem{{"connectors[0]", `duplicate key "interval" (second one at line 2)`}}},
		{"duplicate key deep inside config", one(`"name": "a", "type": "alpha", "config": {"auth": {"user": "u", "user": "v"}}`),
			nil, []Problem{{"connectors[0].config.auth", `duplicate key "user"`}}},
		{"duplicate key in a list", one(`"name": "a", "type": "alpha", "config": {"items": [{}, {"id": 1, "id": 2}]}`),
			nil, []Problem{{"connectors[0].config.items[1]", `duplicate key "id"`}}},
		{"every problem at once", `{"connectors": [
			{"name": "Bad Name", "type": "alpha", "intreval": "5s"},
			{"name": "ok", "type": "gamma", "retries": {"max": 11}}]}`,
			nil, []Problem{
				{"connectors[0].intreval", `unknown field (did you mean "interval"?)`},
				{"connectors[0].name", `"Bad Name" is not a valid name`},
				{"connectors[1].type", `unknown type "gamma"`},
				{"connectors[1].retries.max", `11 is out of range (0..10)`},
			}},
		{"variable not set", `{"connectors": [{"name": "a", "type": "alpha"}, {"name": "b", "type": "beta", "config": {"url": "https://x", "token": "${GITHUB_TOKEN}"}}]}`,
			nil, []Problem{{"connectors[1].config.token", `environment variable GITHUB_TOKEN is not set (export it, or write $${ for a literal "${")`}}},
		{"variable not set in a required field", one(`"name": "${NAME}", "type": "alpha"`),
			nil, []Problem{{"connectors[0].name", `environment variable NAME is not set`}}},
		{"variable not closed", one(`"name": "a", "type": "alpha", "config": {"auth": "Bearer ${TOKEN"}`),
			map[string]string{"TOKEN": "t"}, []Problem{{"connectors[0].config.auth", `"${" is not closed (write ${NAME}, or $${ for a literal "${")`}}},
		{"variable name invalid", one(`"name": "a", "type": "alpha", "labels": {"x": "${1X}"}`),
			nil, []Problem{{"connectors[0].labels.x", `${1X} is not a valid variable name`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.file), MapEnv(tt.env), fakeTypes{})
			problems := problemsOf(t, err)

			require.Len(t, problems.List, len(tt.want), "got:\n%s", err)
			for i, want := range tt.want {
				assert.Equal(t, want.Path, problems.List[i].Path)
				assert.Contains(t, problems.List[i].Message, want.Message)
				assert.Contains(t, err.Error(), "\n  "+want.Path+": ")
			}
		})
	}
}

func TestProblemsErrorListsOnePerLine(t *testing.T) {
	_, err := Parse([]byte(`{"connectors": [
		{"name": "Noaa CA", "type": "alpha", "interval": "5"},
		{"name": "b", "type": "alpha", "timeout": "90s"}]}`), nil, fakeTypes{})

	assert.EqualError(t, err, `connectors.json: 3 problems:
  connectors[0].name: "Noaa CA" is not a valid name (use lowercase letters, digits, "-" and "_")
  connectors[0].interval: "5" is not a duration (write "5s")
  connectors[1].timeout: 90s must be shorter than interval 1m`)
}

// A type that finds several problems in a config (errors.Join) has each
// listed on its own, under the connector's config.
func TestEachProblemOfATypesConfigIsListed(t *testing.T) {
	_, err := Parse([]byte(one(`"name": "a", "type": "beta", "config": {"pages": 0}`)), nil, fakeTypes{})
	assert.Equal(t, []Problem{
		{"connectors[0].config", `url: required (the API address, e.g. "https://api.example.com")`},
		{"connectors[0].config", `pages: 0 must be 1 or more`},
	}, problemsOf(t, err).List)
}

func TestParseRejectsWholeFile(t *testing.T) {
	example := `{"connectors": [{"name": "...", "type": "...", "config": {...}}]}`
	tests := []struct {
		name string
		file string
		want string
	}{
		{"empty", "", `connectors.json is empty (write {"connectors": [...]})`},
		{"only whitespace", " \n\t", `connectors.json is empty (write {"connectors": [...]})`},
		{"not JSON", "{\n  \"connectors\": [\n    {\"name\": \"a\",\n      type: \"alpha\"}]}",
			`connectors.json: not valid JSON at line 4, column 7: invalid character 't' looking for beginning of object key string`},
		{"cut short", `{"connectors": [`, `connectors.json: not valid JSON at line 1, column 16: unexpected end of JSON input`},
		{"two values", `{"connectors": []} {}`, `connectors.json: not valid JSON at line 1, column 20: invalid character '{' after top-level value`},
		{"not an object", `[{"name": "a"}]`, `connectors.json: must be an object like {"connectors": [...]}, not a list`},
		{"no connectors key", `{}`, "connectors.json: 1 problem:\n  connectors: missing (write " + example + ")"},
		{"null connectors", `{"connectors": null}`, "connectors.json: 1 problem:\n  connectors: missing (write " + example + ")"},
		{"empty connectors", `{"connectors": []}`, "connectors.json: 1 problem:\n  connectors: no connectors (add at least one: " + example + ")"},
		{"connectors not a list", `{"connectors": {"name": "a"}}`, "connectors.json: 1 problem:\n  connectors: must be a list of connectors, not an object (write " + example + ")"},
		{"connectors twice", `{"connectors": [], "connectors": [{"name": "a", "type": "alpha"}]}`,
			`connectors.json: duplicate key "connectors" (second one at line 1)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.file), nil, fakeTypes{})
			problemsOf(t, err)
			assert.EqualError(t, err, tt.want)
		})
	}
}

func TestSubstitution(t *testing.T) {
	env := MapEnv(map[string]string{"TOKEN": "tok-123", "EMPTY": "", "TEAM": "wx", "IVAL": "5m"})
	tests := []struct {
		name        string
		fields      string
		wantConfig  string
		wantSecrets []string
	}{
		{"whole value", `"config": {"token": "${TOKEN}"}`, `{"token": "tok-123"}`, []string{"tok-123"}},
		{"inside a longer string", `"config": {"auth": "Bearer ${TOKEN}"}`, `{"auth": "Bearer tok-123"}`, []string{"tok-123"}},
		{"twice in one string", `"config": {"pair": "${TOKEN}:${TEAM}"}`, `{"pair": "tok-123:wx"}`, []string{"tok-123", "wx"}},
		{"escaped", `"config": {"tmpl": "$${HOME} costs $5 and $$"}`, `{"tmpl": "${HOME} costs $5 and $$"}`, []string{}},
		{"empty but set", `"config": {"token": "${EMPTY}"}`, `{"token": ""}`, []string{}},
		{"deep in lists", `"config": {"hosts": [{"auth": "${TOKEN}"}]}`, `{"hosts": [{"auth": "tok-123"}]}`, []string{"tok-123"}},
		{"numbers kept exact", `"config": {"id": 12345678901234567890, "ratio": 0.1000}`, `{"id": 12345678901234567890, "ratio": 0.1000}`, []string{}},
		{"universal fields too", `"interval": "${IVAL}", "labels": {"team": "${TEAM}"}`, `{}`, []string{"5m", "wx"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(one(`"name": "a", "type": "alpha", `+tt.fields)), env, fakeTypes{})
			require.NoError(t, err)
			assert.JSONEq(t, tt.wantConfig, string(cfg.Connectors[0].Config))
			assert.ElementsMatch(t, tt.wantSecrets, cfg.Secrets())
		})
	}

	t.Run("numbers are not rounded", func(t *testing.T) {
		cfg, err := Parse([]byte(one(`"name": "a", "type": "alpha", "config": {"id": 12345678901234567890}`)), nil, fakeTypes{})
		require.NoError(t, err)
		assert.Contains(t, string(cfg.Connectors[0].Config), "12345678901234567890")
	})
	t.Run("resolved universal fields are used", func(t *testing.T) {
		cfg, err := Parse([]byte(one(`"name": "a", "type": "alpha", "interval": "${IVAL}", "labels": {"team": "${TEAM}"}`)), env, fakeTypes{})
		require.NoError(t, err)
		assert.Equal(t, 5*time.Minute, cfg.Connectors[0].Interval)
		assert.Equal(t, map[string]string{"team": "wx"}, cfg.Connectors[0].Labels)
	})
}

// TestSecretsNeverAppearInErrors is guarantee 7 for config: whatever is
// wrong, a value resolved from ${VAR} is not in the error text.
func TestSecretsNeverAppearInErrors(t *testing.T) {
	env := map[string]string{
		"IVAL":       "garbage-ival-s3cret",
		"SHORT":      "7",
		"LONG_T":     "90s",
		"NAME":       "Name With S3cret",
		"DUP":        "dup-s3cret-name",
		"TYPE":       "type-s3cret",
		"URL":        "http://user:pa55w0rd@internal",
		"TOKEN":      "ghp_T0kenS3cret",
		"LABEL":      "label-s3cret",
		"CONNECTORS": "unused",
	}
	tests := []struct {
		name    string
		file    string
		secrets []string
		instead string // what the message shows in place of the secret
	}{
		{"unparsable duration", one(`"name": "a", "type": "alpha", "interval": "${IVAL}"`), []string{"garbage-ival-s3cret"}, "${"},
		{"bare number duration", one(`"name": "a", "type": "alpha", "interval": "${SHORT}"`), []string{`"7"`, `7s`}, "${"},
		{"out of range duration", one(`"name": "a", "type": "alpha", "timeout": "${LONG_T}"`), []string{"90s", "1m30s"}, "${"},
		{"invalid interval used in comparisons", one(`"name": "a", "type": "alpha", "interval": "${LONG_T}", "timeout": "2m", "jitter": "95s"`), []string{"90s", "1m30s"}, "${"},
		{"invalid name", one(`"name": "${NAME}", "type": "alpha"`), []string{"Name With S3cret", "S3cret"}, "${"},
		{"duplicate name", `{"connectors": [{"name": "${DUP}", "type": "alpha"}, {"name": "${DUP}", "type": "alpha"}]}`, []string{"dup-s3cret-name"}, "${"},
		{"unknown type", one(`"name": "a", "type": "${TYPE}"`), []string{"type-s3cret"}, "${"},
		{"type's Validate echoes the value", one(`"name": "a", "type": "beta", "config": {"url": "${URL}"}`), []string{"pa55w0rd", "user:pa55w0rd"}, "[REDACTED]"},
		{"secret beside other problems", one(`"name": "a", "type": "beta", "interval": "x", "labels": {"l": "${LABEL}"}, "config": {"url": "ftp://${TOKEN}@x"}`),
			[]string{"label-s3cret", "ghp_T0kenS3cret"}, "[REDACTED]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.file), MapEnv(env), fakeTypes{})
			problems := problemsOf(t, err)
			for _, secret := range tt.secrets {
				assert.NotContains(t, err.Error(), secret)
				for _, p := range problems.List {
					assert.NotContains(t, p.Message, secret)
				}
			}
			assert.Contains(t, err.Error(), tt.instead)
		})
	}

	t.Run("environment connector", func(t *testing.T) {
		_, _, err := Load(MapEnv(map[string]string{
			"CONNECTOR_TYPE": "beta", "CONNECTOR_NAME": "dev", "URL_VAR": "http://tok:s3cr3t-pw@h",
			"CONNECTOR_CONFIG": `{"url": "${URL_VAR}"}`,
		}), fakeTypes{})
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "s3cr3t-pw")
		assert.Contains(t, err.Error(), "CONNECTOR_CONFIG: url")
	})
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

const twoConnectors = `{"connectors": [
	{"name": "a", "type": "alpha"},
	{"name": "b", "type": "alpha", "enabled": false}]}`

func TestLoadFromFile(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "custom.json", twoConnectors)

	tests := []struct {
		name        string
		env         map[string]string
		wantNames   []string
		wantEnabled []string
		wantSource  string
	}{
		{"CONNECTORS_FILE", map[string]string{"CONNECTORS_FILE": path},
			[]string{"a", "b"}, []string{"a"}, path + " (2 connectors)"},
		{"CONNECTOR_NAME keeps one", map[string]string{"CONNECTORS_FILE": path, "CONNECTOR_NAME": "a"},
			[]string{"a"}, []string{"a"}, path + ` (connector "a" of 2)`},
		{"CONNECTOR_NAME runs a disabled connector", map[string]string{"CONNECTORS_FILE": path, "CONNECTOR_NAME": "b"},
			[]string{"b"}, []string{"b"}, path + ` (connector "b" of 2)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, source, err := Load(MapEnv(tt.env), fakeTypes{})
			require.NoError(t, err)
			assert.Equal(t, tt.wantNames, names(cfg.Connectors))
			assert.Equal(t, tt.wantEnabled, names(cfg.Enabled()))
			assert.Equal(t, tt.wantSource, source)
		})
	}
}

func TestLoadDefaultFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "connectors.json", one(`"name": "a", "type": "alpha"`))
	t.Chdir(dir)

	cfg, source, err := Load(MapEnv(nil), fakeTypes{})
	require.NoError(t, err)
	assert.Equal(t, []string{"a"}, names(cfg.Connectors))
	assert.Equal(t, "connectors.json (1 connector)", source)
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "c.json", twoConnectors)
	bad := writeFile(t, dir, "bad.json", one(`"name": "a", "type": "alpha", "interval": "5"`))
	missing := filepath.Join(dir, "nope.json")

	t.Run("CONNECTOR_NAME not in the file", func(t *testing.T) {
		_, _, err := Load(MapEnv(map[string]string{"CONNECTORS_FILE": path, "CONNECTOR_NAME": "zzz"}), fakeTypes{})
		problems := problemsOf(t, err)
		require.Len(t, problems.List, 1)
		assert.Equal(t, "CONNECTOR_NAME", problems.List[0].Path)
		assert.Equal(t, `no connector named "zzz" in `+path+` (available: a, b)`, problems.List[0].Message)
	})
	t.Run("missing file", func(t *testing.T) {
		_, _, err := Load(MapEnv(map[string]string{"CONNECTORS_FILE": missing}), fakeTypes{})
		require.Error(t, err)
		assert.ErrorIs(t, err, fs.ErrNotExist)
		assert.Contains(t, err.Error(), missing)
		assert.Contains(t, err.Error(), "set CONNECTORS_FILE to its path")
	})
	t.Run("missing default file", func(t *testing.T) {
		t.Chdir(t.TempDir())
		_, _, err := Load(nil, fakeTypes{})
		assert.ErrorIs(t, err, fs.ErrNotExist)
		assert.Contains(t, err.Error(), "connectors file connectors.json: file does not exist (create it")
	})
	t.Run("problems are headed by the file path", func(t *testing.T) {
		_, _, err := Load(MapEnv(map[string]string{"CONNECTORS_FILE": bad}), fakeTypes{})
		problemsOf(t, err)
		assert.True(t, strings.HasPrefix(err.Error(), bad+": 1 problem:\n  connectors[0].interval: "), err.Error())
	})
}

func TestLoadFromEnvironment(t *testing.T) {
	cfg, source, err := Load(MapEnv(map[string]string{
		"CONNECTORS_FILE":     "/does/not/matter.json",
		"CONNECTOR_TYPE":      "beta",
		"CONNECTOR_NAME":      "dev",
		"CONNECTOR_INTERVAL":  "5s",
		"CONNECTOR_TIMEOUT":   "2s",
		"CONNECTOR_JITTER":    "1s", // not read: jitter is ignored, so it has no variable
		"CONNECTOR_LEASE_TTL": "10s",
		"CONNECTOR_RETRIES":   "4",
		"CONNECTOR_CONFIG":    `{"url": "https://x", "token": "${TOKEN}"}`,
		"TOKEN":               "tok-env",
	}), fakeTypes{})
	require.NoError(t, err)

	assert.Equal(t, EnvSource, source)
	assert.Equal(t, []Connector{{
		Name:     "dev",
		Type:     "beta",
		Enabled:  true,
		Interval: 5 * time.Second,
		Timeout:  2 * time.Second,
		Retries:  Retries{Max: 4, Backoff: time.Second},
		LeaseTTL: 10 * time.Second,
		SeenCap:  100_000,
		Config:   json.RawMessage(`{"token":"tok-env","url":"https://x"}`),
	}}, cfg.Connectors)
	assert.Equal(t, []string{"tok-env"}, cfg.Secrets())
}

func TestLoadFromEnvironmentProblems(t *testing.T) {
	base := map[string]string{"CONNECTOR_TYPE": "alpha", "CONNECTOR_NAME": "dev"}
	tests := []struct {
		name string
		env  map[string]string
		want []Problem
	}{
		{"name empty", map[string]string{"CONNECTOR_NAME": ""},
			[]Problem{{"CONNECTOR_NAME", "required"}}},
		{"type empty", map[string]string{"CONNECTOR_TYPE": "", "CONNECTOR_NAME": "dev"},
			[]Problem{{"CONNECTOR_TYPE", "required (known: alpha, beta)"}}},
		{"interval", map[string]string{"CONNECTOR_INTERVAL": "5"},
			[]Problem{{"CONNECTOR_INTERVAL", `"5" is not a duration (write "5s")`}}},
		{"lease ttl", map[string]string{"CONNECTOR_LEASE_TTL": "500ms"},
			[]Problem{{"CONNECTOR_LEASE_TTL", `500ms is too short (at least 1s)`}}},
		{"retries not a number", map[string]string{"CONNECTOR_RETRIES": "many"},
			[]Problem{{"CONNECTOR_RETRIES", `must be a number from 0 to 10, not a string`}}},
		{"retries out of range", map[string]string{"CONNECTOR_RETRIES": "11"},
			[]Problem{{"CONNECTOR_RETRIES", `11 is out of range (0..10)`}}},
		{"config not JSON", map[string]string{"CONNECTOR_CONFIG": `{"url": }`},
			[]Problem{{"CONNECTOR_CONFIG", `not valid JSON at line 1, column 9: invalid character '}' looking for beginning of value`}}},
		{"config duplicate key", map[string]string{"CONNECTOR_CONFIG": `{"a": 1, "a": 2}`},
			[]Problem{{"CONNECTOR_CONFIG", `duplicate key "a"`}}},
		{"config variable not set", map[string]string{"CONNECTOR_CONFIG": `{"token": "${NOPE}"}`},
			[]Problem{{"CONNECTOR_CONFIG.token", `environment variable NOPE is not set`}}},
		{"type's own validation", map[string]string{"CONNECTOR_TYPE": "beta"},
			[]Problem{{"CONNECTOR_CONFIG", `url: required`}}},
		{"not JSON and another problem", map[string]string{"CONNECTOR_TYPE": "beta", "CONNECTOR_CONFIG": `{`, "CONNECTOR_TIMEOUT": "0s"},
			[]Problem{
				{"CONNECTOR_CONFIG", `not valid JSON`},
				{"CONNECTOR_TIMEOUT", `0s must be longer than 0`},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			_, source, err := Load(MapEnv(env), fakeTypes{})
			assert.Equal(t, EnvSource, source)
			problems := problemsOf(t, err)
			require.Len(t, problems.List, len(tt.want), "got:\n%s", err)
			for i, want := range tt.want {
				assert.Equal(t, want.Path, problems.List[i].Path)
				assert.Contains(t, problems.List[i].Message, want.Message)
			}
			assert.True(t, strings.HasPrefix(err.Error(), EnvSource+": "), err.Error())
		})
	}
}

// An editor finds the file's JSON Schema from its "$schema"; the loader
// takes the file as it would without it.
func TestParseAcceptsSchemaReference(t *testing.T) {
	cfg, err := Parse([]byte(`{"$schema": "./docs/connectors.schema.json", "connectors": [{"name": "a", "type": "alpha"}]}`), nil, fakeTypes{})
	require.NoError(t, err)
	require.Len(t, cfg.Connectors, 1)
	assert.Equal(t, "a", cfg.Connectors[0].Name)
}

// The defaults EntrySpec documents are the ones the validator applies.
func TestEntrySpecDefaultsAreApplied(t *testing.T) {
	cfg, err := Parse([]byte(one(`"name": "a", "type": "alpha"`)), nil, fakeTypes{})
	require.NoError(t, err)
	got := cfg.Connectors[0]
	spec := EntrySpec()
	duration := func(path string) time.Duration {
		t.Helper()
		f, ok := spec.Lookup(path)
		require.True(t, ok, path)
		d, err := time.ParseDuration(f.Default.(string))
		require.NoError(t, err, path)
		return d
	}
	value := func(path string) any {
		t.Helper()
		f, ok := spec.Lookup(path)
		require.True(t, ok, path)
		return f.Default
	}
	assert.Equal(t, value("enabled"), got.Enabled)
	assert.Equal(t, duration("interval"), got.Interval)
	assert.Equal(t, duration("jitter"), got.Jitter)
	assert.Equal(t, duration("retries.backoff"), got.Retries.Backoff)
	assert.Equal(t, value("retries.max"), got.Retries.Max)
	assert.Equal(t, duration("lease_ttl"), got.LeaseTTL)
	assert.Equal(t, value("seen_cap"), got.SeenCap)
	assert.Equal(t, fields, fieldNames(spec.Fields), "the validator knows the fields EntrySpec lists")
}
