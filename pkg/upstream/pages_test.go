package upstream

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPages(t *testing.T) {
	t.Run("a loop A, B, A is caught at its first repeat", func(t *testing.T) {
		p := NewPages(10, "")
		require.NoError(t, p.Next("A"))
		require.NoError(t, p.Next("B"))
		err := p.Next("A")
		loop, ok := errors.AsType[*PageLoopError](err)
		require.True(t, ok, "%v", err)
		assert.Equal(t, &PageLoopError{Page: 4, Repeats: 2}, loop)
		assert.EqualError(t, err, "page 4 would be page 2 again: the next-page token points back, so the upstream's pagination loops")
		assert.Equal(t, 3, p.Read())
	})
	t.Run("a token pointing back at the first page", func(t *testing.T) {
		p := NewPages(10, "https://x.example/a")
		err := p.Next("https://x.example/a")
		assert.Equal(t, &PageLoopError{Page: 2, Repeats: 1}, err)
	})
	t.Run("max pages", func(t *testing.T) {
		p := NewPages(2, "")
		require.NoError(t, p.Next("A"))
		assert.ErrorIs(t, p.Next("B"), ErrMaxPages)
		assert.Equal(t, 2, p.Read())
	})
}
