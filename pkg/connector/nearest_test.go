package connector_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

func TestNearest(t *testing.T) {
	tests := []struct {
		word, want string
		ok         bool
	}{
		{"intreval", "interval", true},
		{"weather-nooa", "weather-noaa", true},
		{"typ", "type", true},
		{"x", "", false},
		{"colour", "", false},
	}
	candidates := []string{"name", "type", "interval", "weather-noaa"}
	for _, tt := range tests {
		t.Run(tt.word, func(t *testing.T) {
			got, ok := connector.Nearest(tt.word, candidates)
			assert.Equal(t, tt.ok, ok)
			if tt.ok {
				assert.Equal(t, tt.want, got)
			}
		})
	}
}
