package stack

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
)

// The banner points a new user at the demo connector's signals, which flow
// without internet, when the config has one enabled.
func TestBannerDemoLine(t *testing.T) {
	const server = "nats://127.0.0.1:4222"
	quakes := `{"name": "quakes", "type": "usgs-earthquakes", "config": {"feed": "all_hour"}}`
	tests := []struct {
		name, connectors, want string
	}{
		{"the shipped entry", `{"name": "demo", "type": "demo", "interval": "5s", "config": {"change_every": "10s"}}, ` + quakes,
			"  demo         one item changes every 10s on signals.demo.demo, no internet needed: " +
				"go run ./services/pollctl --server nats://127.0.0.1:4222 tail 'signals.demo.>'\n"},
		{"the default change_every", quakes + `, {"name": "offline", "type": "demo"}`,
			"  demo         one item changes every 10s on signals.demo.offline, no internet needed: " +
				"go run ./services/pollctl --server nats://127.0.0.1:4222 tail 'signals.demo.>'\n"},
		{"a disabled demo", quakes + `, {"name": "demo", "type": "demo", "enabled": false}`, ""},
		{"no demo", quakes, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.ParseDefinitions("connectors.json", []byte(`{"connectors": [`+tt.connectors+`]}`), builtin.Registry())
			require.NoError(t, err)
			assert.Equal(t, tt.want, demoLine(cfg, server))
		})
	}
}
