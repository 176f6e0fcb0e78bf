package config

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEncodeJSONWritesWhatMarshalWrites(t *testing.T) {
	for _, tt := range []struct {
		name string
		tree any
	}{
		{"a config", decodeTree(t, `{"url": "http://127.0.0.1:18080/items/1", "items": ".items[]", "id": ".id", "version": ".version|tostring",
			"page_size": 100, "ratio": -1.5e3, "on": true, "off": false, "none": null, "headers": {"B": "2", "A": "1"}, "list": ["a", 2, [], {}]}`)},
		{"strings json escapes", decodeTree(t, `{"html": "<a href=\"x\">&amp;</a>", "ctrl": "a\tb\nc\u0001\u007f", "back": "C:\\dir",
			"unicode": "é ☃ 😀", "separators": "\u2028\u2029", "empty": "", "": "empty key", "k\"ey<": "v"}`)},
		{"invalid UTF-8, as a variable's value never is", map[string]any{"bad": "a\xffb"}},
		{"nil map and list", map[string]any{"m": map[string]any(nil), "l": []any(nil)}},
		{"empty", map[string]any{}},
		{"deep", decodeTree(t, `{"a": [{"b": [[{"c": {"d": [1, "x"]}}]]}]}`)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want, wantErr := json.Marshal(tt.tree)
			got, err := encodeJSON(tt.tree)
			require.NoError(t, wantErr)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(got))
		})
	}
}

func decodeTree(t *testing.T, s string) any {
	t.Helper()
	var tree any
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&tree))
	return tree
}

func FuzzEncodeJSON(f *testing.F) {
	for _, seed := range []string{`{"a": "<b>&", "c": [1, -2.5e-3, true, null, {"": "\u2028"}]}`, `"\u0000\u007f\ud83d\ude00"`, `[[], {}]`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		var tree any
		dec := json.NewDecoder(bytes.NewReader([]byte(data)))
		dec.UseNumber()
		if dec.Decode(&tree) != nil {
			return
		}
		want, wantErr := json.Marshal(tree)
		got, err := encodeJSON(tree)
		if wantErr != nil || err != nil {
			assert.Equal(t, wantErr != nil, err != nil)
			return
		}
		assert.Equal(t, string(want), string(got))
	})
}
