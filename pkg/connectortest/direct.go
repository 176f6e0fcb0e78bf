package connectortest

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

// This file is for tests that build a connector and call its Poll
// themselves, without a Harness.

// ConfigError builds a connector with factory from raw and empty Deps, as
// config validation does, and requires the factory to reject it: an error,
// no connector, and an error text containing each of want. It returns the
// error for further checks (that it shows no secret).
func ConfigError(t testing.TB, factory connector.Factory, raw string, want ...string) error {
	t.Helper()
	c, err := factory(json.RawMessage(raw), connector.Deps{})
	require.Error(t, err, "the factory accepted %s", raw)
	assert.Nil(t, c)
	for _, w := range want {
		assert.Contains(t, err.Error(), w)
	}
	return err
}

// ItemIDs lists the items' ids in order (an empty list, not nil, for none).
func ItemIDs(items []connector.Item) []string {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	return ids
}

// ItemVersions lists the items' versions in order (an empty list, not nil,
// for none).
func ItemVersions(items []connector.Item) []string {
	versions := make([]string, len(items))
	for i, it := range items {
		versions[i] = it.Version
	}
	return versions
}
