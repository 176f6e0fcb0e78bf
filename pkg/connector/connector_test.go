package connector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

// exampleConfig records the order Build calls it in.
type exampleConfig struct {
	URL      string `json:"url"`
	Token    string `json:"token,omitempty"`
	MaxPages *int   `json:"max_pages,omitempty"`

	calls []string
}

var exampleSpec = connector.Spec{Fields: []connector.Field{
	{Name: "url", Kind: connector.String, Required: true, Hint: `write e.g. "https://example.com"`},
	{Name: "token", Kind: connector.String, Secret: true, Description: `Write "${EXAMPLE_TOKEN}".`},
	connector.MaxPages(10, 100, ""),
}}

func (exampleConfig) Spec() connector.Spec { return exampleSpec }

func (c *exampleConfig) ApplyDefaults() {
	c.calls = append(c.calls, "defaults")
	connector.SetDefault(&c.MaxPages, 10)
}

func (c exampleConfig) Validate() error {
	if c.URL != "" && !strings.HasPrefix(c.URL, "https://") {
		return errors.New("config.url: must start with https://")
	}
	return nil
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
		want string // the whole error
	}{
		{name: "the spec's problems and Validate's at once", raw: `{"url": "http://example.com", "max_pages": 0}`,
			want: "config.max_pages: 0 is out of range (write a number from 1 to 100; default 10)\nconfig.url: must start with https://"},
		{name: "a bad allow_hosts entry, with the type's own problems", raw: `{"allow_hosts": ["10.0.0.0/33"]}`,
			want: "config.allow_hosts[0]: \"10.0.0.0/33\" is not a CIDR (write a host such as \"api.internal\" or \"*.corp.example\", " +
				"an address such as \"10.1.2.3\", or a CIDR such as \"10.0.0.0/8\")\n" +
				`config.url: required: write e.g. "https://example.com"`},
		{name: "allow_hosts not a list", raw: `{"url": "https://example.com", "allow_hosts": "10.0.0.0/8"}`,
			want: `config.allow_hosts: must be a list of hosts, addresses or CIDRs, like ["api.internal", "10.0.0.0/8"]`},
		{name: "an unknown field is not decoded nor validated", raw: `{"url": "http://example.com", "max_page": 3}`,
			want: `config.max_page: unknown field (did you mean "max_pages"?)`},
		{name: "a wrong kind, with the other problems of the spec", raw: `{"max_pages": "3"}`,
			want: "config.url: required: write e.g. \"https://example.com\"\nconfig.max_pages: must be a whole number, not a string"},
		{name: "a secret is never quoted", raw: `{"url": "https://example.com", "token": "Bearer SECRET"}`,
			want: `config.token: contains whitespace or control characters (often a trailing newline in the environment variable, or a "Bearer " prefix: write the secret alone)`},
		{name: "not an object", raw: `[]`, want: "decode config: json: cannot unmarshal array into Go value of type connector_test.exampleConfig"},
		{name: "not JSON", raw: `{"url": `, want: "decode config: unexpected EOF"},
		{name: "empty means {}", raw: ``, want: `config.url: required: write e.g. "https://example.com"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newExample(json.RawMessage(tt.raw), connector.Deps{})
			require.Error(t, err)
			assert.Nil(t, c)
			assert.Equal(t, tt.want, err.Error())
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
