package jsondepth

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestOver(t *testing.T) {
	for _, tt := range []struct {
		doc  string
		max  int
		want int
	}{
		{`{"a": [1, {"b": 2}]}`, 3, -1},
		{`{"a": [1, {"b": 2}]}`, 2, 10},
		{`{"a": "[[[[{{{{"}`, 1, -1}, // brackets inside a string do not count
		{`{"a": "\"[[["}`, 1, -1},    // nor after an escaped quote
		{`[[]] [[]]`, 2, -1},         // depth goes back down
		{strings.Repeat("[", 5), 4, 4},
		{"", 0, -1},
	} {
		assert.Equal(t, tt.want, Over([]byte(tt.doc), tt.max), "%s max %d", tt.doc, tt.max)
	}
}
