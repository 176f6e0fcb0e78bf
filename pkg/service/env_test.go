package service

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
)

func TestLogFormat(t *testing.T) {
	for _, tc := range []struct {
		value, want, err string
	}{
		{value: "", want: "json"},
		{value: "text", want: "text"},
		{value: " json ", want: "json"},
		{value: "logfmt", err: `LOG_FORMAT="logfmt": want json or text`},
	} {
		env, err := ReadEnv(config.MapEnv(map[string]string{"LOG_FORMAT": tc.value}), ":0")
		if tc.err != "" {
			assert.EqualError(t, err, tc.err, tc.value)
			continue
		}
		require.NoError(t, err, tc.value)
		assert.Equal(t, tc.want, env.LogFormat, tc.value)
	}
}
