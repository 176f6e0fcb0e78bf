package connector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

// exampleConfig records the order Build calls it in.
type exampleConfig struct {
	URL      string `json:"url"`
	MaxPages *int   `json:"max_pages,omitempty"`

	calls []string
}

func (c *exampleConfig) ApplyDefaults() {
	c.calls = append(c.calls, "defaults")
	if c.MaxPages == nil {
		n := 10
		c.MaxPages = &n
	}
}

func (c exampleConfig) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New(`config.url: required (write e.g. "https://example.com")`))
	}
	if *c.MaxPages < 1 {
		errs = append(errs, errors.New("config.max_pages: must be at least 1"))
	}
	return errors.Join(errs...)
}

type exampleConnector struct {
	cfg  exampleConfig
	deps connector.Deps
}

func (exampleConnector) Poll(context.Context, connector.State) (connector.Result, error) {
	return connector.Result{}, nil
}

func newExample(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
	return connector.Build("example", raw, deps, func(cfg exampleConfig, deps connector.Deps) (connector.Connector, error) {
		return exampleConnector{cfg: cfg, deps: deps}, nil
	})
}

func TestBuild(t *testing.T) {
	t.Run("decode, defaults, validate, build", func(t *testing.T) {
		c, err := newExample(json.RawMessage(`{"url": "https://example.com"}`), connector.Deps{})
		require.NoError(t, err)
		got := c.(exampleConnector)
		assert.Equal(t, "https://example.com", got.cfg.URL)
		assert.Equal(t, 10, *got.cfg.MaxPages, "defaults applied before build")
		assert.Equal(t, []string{"defaults"}, got.cfg.calls)
		require.NotNil(t, got.deps.Logger, "a logger even when Deps has none")
		assert.Nil(t, got.deps.HTTP, "HTTP passed as given")
	})
	t.Run("the logger names the connector type", func(t *testing.T) {
		var out bytes.Buffer
		c, err := newExample(json.RawMessage(`{"url": "https://example.com"}`), connector.Deps{Logger: slog.New(slog.NewTextHandler(&out, nil))})
		require.NoError(t, err)
		c.(exampleConnector).deps.Logger.Info("hello")
		assert.Contains(t, out.String(), "connector_type=example")
	})
	t.Run("every type accepts allow_hosts", func(t *testing.T) {
		c, err := newExample(json.RawMessage(`{"url": "https://example.com", "allow_hosts": ["10.0.0.0/8", "*.corp.example"]}`), connector.Deps{})
		require.NoError(t, err)
		deps := c.(exampleConnector).deps
		assert.Equal(t, "10.0.0.0/8,*.corp.example", deps.AllowHosts.String())
		assert.True(t, deps.AllowHosts.AllowsHost("jira.corp.example"))

		c, err = newExample(json.RawMessage(`{"url": "https://example.com", "allow_hosts": null}`), connector.Deps{})
		require.NoError(t, err)
		assert.True(t, c.(exampleConnector).deps.AllowHosts.IsZero())
	})
	tests := []struct {
		name string
		raw  string
		want []string
	}{
		{name: "every problem at once", raw: `{"max_pages": 0}`, want: []string{"config.url: required", "config.max_pages: must be at least 1"}},
		{name: "a bad allow_hosts entry, with the type's own problems", raw: `{"allow_hosts": ["10.0.0.0/33"]}`,
			want: []string{`config.allow_hosts[0]: "10.0.0.0/33" is not a CIDR`, "config.url: required"}},
		{name: "allow_hosts not a list", raw: `{"url": "https://example.com", "allow_hosts": "10.0.0.0/8"}`,
			want: []string{`config.allow_hosts: must be a list of hosts, addresses or CIDRs`}},
		{name: "unknown field", raw: `{"url": "https://example.com", "max_page": 3}`, want: []string{`decode config: json: unknown field "max_page"`}},
		{name: "not an object", raw: `[]`, want: []string{"decode config"}},
		{name: "empty means {}", raw: ``, want: []string{"config.url: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newExample(json.RawMessage(tt.raw), connector.Deps{})
			require.Error(t, err)
			assert.Nil(t, c)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestCheckSecret(t *testing.T) {
	tests := []struct{ name, value, want string }{
		{"set", "xoxb-123", ""},
		{"missing", "", `config.token: required: write "${SLACK_TOKEN}"`},
		{"unresolved", "${SLACK_TOKEN}", "config.token: the ${VAR} reference was not resolved: set that environment variable for the worker"},
		{"trailing newline", "SECRET\n", "config.token: contains whitespace or control characters (often a trailing newline in the environment variable)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := connector.CheckSecret("config.token", tt.value, `write "${SLACK_TOKEN}"`)
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.EqualError(t, err, tt.want)
			assert.NotContains(t, err.Error(), "SECRET")
		})
	}
}

func TestCutText(t *testing.T) {
	for _, tt := range []struct {
		in   string
		max  int
		want string
		cut  bool
	}{
		{"héllo", 5, "héllo", false},
		{"héllo", 2, "hé", true},
		{"", 3, "", false},
		{"üüü", 0, "", true},
	} {
		got, cut := connector.CutText(tt.in, tt.max)
		assert.Equal(t, tt.want, got)
		assert.Equal(t, tt.cut, cut)
	}
}

func TestSetDefault(t *testing.T) {
	var unset *int
	connector.SetDefault(&unset, 10)
	require.NotNil(t, unset)
	assert.Equal(t, 10, *unset)

	zero := 0
	written := &zero
	connector.SetDefault(&written, 10)
	assert.Equal(t, 0, *written, "a value written in the config, even 0, stays")
}
