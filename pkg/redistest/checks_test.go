package redistest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pollgrid/pollgrid/pkg/redistest"
)

func TestClusterSlotMatchesRedis(t *testing.T) {
	// Vectors from the Redis Cluster specification.
	assert.Equal(t, 12739, redistest.ClusterSlot("123456789"), "CRC-16/XMODEM of 123456789 is 0x31C3")
	assert.Equal(t, redistest.ClusterSlot("user1000"), redistest.ClusterSlot("{user1000}.following"))
	assert.Equal(t, 8363, redistest.ClusterSlot("foo{}{bar}"), "an empty tag hashes the whole key (the slot of bar is 5061)")
	assert.Equal(t, redistest.ClusterSlot("bar"), redistest.ClusterSlot("foo{bar}{zap}"), "the first tag counts")
}
