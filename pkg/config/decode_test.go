package config

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readTree makes the tree a json.Decoder with UseNumber makes, from any
// valid JSON.
func TestReadTreeReadsWhatTheDecoderReads(t *testing.T) {
	for _, tt := range []struct{ name, data string }{
		{"a connector", `{"name": "a", "type": "http-json", "enabled": true, "interval": "60s", "labels": {"team": "wx"},
			"config": {"url": "http://127.0.0.1:18080/items/1", "page_size": 100, "ratio": -1.5e3, "off": false, "none": null, "list": ["a", 2, [], {}]}}`},
		{"compact", `{"a":[1,2,{"b":null}],"c":{}}`},
		{"strings with escapes", `{"html": "<a href=\"x\">&amp;</a>", "ctrl": "a\tb\nc\u0001\u007f", "back": "C:\\dir",
			"unicode": "é ☃ 😀", "pair": "\ud83d\ude00", "lone": "\ud83d", "separators": "\u2028\u2029", "": "empty key", "k\"ey\u00e9": "v"}`},
		{"a key twice keeps the last", `{"a": 1, "a": [2]}`},
		{"spaces everywhere", " \n{ \"a\" :\t[ 1 , \"x\" ] , \"b\" : { } }\r\n"},
		{"not an object", `[true, false, null, 0, -0.5, 1e9, "s"]`},
		{"a string", `"x"`},
		{"a number", ` 12.5 `},
		{"null", `null`},
		{"invalid UTF-8", "{\"a\": \"x\xffy\", \"k\xfe\": 1}"},
		{"deep", `{"a": [{"b": [[{"c": {"d": [1, "x"]}}]]}]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := decoded(t, tt.data)
			assert.Equal(t, want, readTree([]byte(tt.data)))
		})
	}
}

func decoded(t *testing.T, data string) any {
	t.Helper()
	var tree any
	dec := json.NewDecoder(bytes.NewReader([]byte(data)))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&tree))
	return tree
}

func FuzzReadTree(f *testing.F) {
	for _, seed := range []string{`{"a": "<b>&", "c": [1, -2.5e-3, true, null, {"": "\u2028"}]}`, `"\u0000\u007f\ud83d\ude00"`, `[[], {}]`, `{"a":1,"a":2}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		if !json.Valid([]byte(data)) {
			return
		}
		var want any
		dec := json.NewDecoder(bytes.NewReader([]byte(data)))
		dec.UseNumber()
		require.NoError(t, dec.Decode(&want))
		assert.Equal(t, want, readTree([]byte(data)))
		var b bytes.Buffer
		require.NoError(t, json.Compact(&b, []byte(data)))
		assert.Equal(t, b.String(), string(compact([]byte(data))))
		assert.Equal(t, b.String(), string(compacted([]byte(data))))
		assert.Equal(t, b.Len() == len(data), isCompact([]byte(data)))
	})
}

// compact keeps nothing but the spaces out, and copies a compact value.
func TestCompact(t *testing.T) {
	for _, tt := range []struct{ data, want string }{
		{`{"a":"b c","d":[1,2]}`, `{"a":"b c","d":[1,2]}`},
		{"{ \"a\" : \"b \\\" c\" ,\n\t\"d\": [1, 2] }", `{"a":"b \" c","d":[1,2]}`},
		{`"x \\"`, `"x \\"`},
	} {
		data := []byte(tt.data)
		got := compact(data)
		assert.Equal(t, tt.want, string(got))
		assert.Equal(t, tt.data == tt.want, isCompact(data), tt.data)
		if len(got) > 0 {
			got[0] = '!'
			assert.Equal(t, tt.data, string(data), "a copy")
		}
	}
}

// Names reads the names json.Unmarshal would, and never fails (nor reads
// past the end) on what is not JSON.
func TestNames(t *testing.T) {
	connectors, budgets := Names([]byte(`{"budgets": {"b1": {}, "b\u0032": {"limit": 1}}, "x": [1, {"name": "no"}],
		"connectors": [{"name": "a", "config": {"name": "inner"}}, {"type": "t"}, {"name": ""}, {"name": 5}, "s", {"name": "b", "name": "c"}, {"name": "d\u00e9"}]}`))
	assert.Equal(t, []string{"a", "c", "dé"}, connectors)
	assert.Equal(t, []string{"b1", "b2"}, budgets)
	for _, data := range []string{``, `{`, `{"connectors"`, `{"connectors":`, `{"connectors": [{"name": "a`, `{"connectors": [{"name": "`,
		`{"connectors": [{"name"`, `{"budgets": {"a"`, `{"budgets": {"`, `[`, `"`, `nul`, `{"a" "b"}`} {
		assert.NotPanics(t, func() { Names([]byte(data)) }, data)
	}
}

func FuzzNames(f *testing.F) {
	for _, seed := range []string{`{"budgets": {"b": {}}, "connectors": [{"name": "a"}, {"name": "b\u00e9", "x": [1, "]"]}]}`, `{"connectors": [{"name": "a`, `{"a":`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		connectors, budgets := Names([]byte(data)) // never panics
		var top map[string]json.RawMessage
		if !json.Valid([]byte(data)) || json.Unmarshal([]byte(data), &top) != nil {
			return
		}
		var items []json.RawMessage
		_ = json.Unmarshal(top["connectors"], &items)
		var want []string
		for _, item := range items {
			var c map[string]json.RawMessage
			var name string
			if json.Unmarshal(item, &c) == nil && json.Unmarshal(c["name"], &name) == nil && name != "" {
				want = append(want, name)
			}
		}
		assert.Equal(t, len(want), len(connectors))
		for i := range min(len(want), len(connectors)) {
			assert.Equal(t, want[i], connectors[i])
		}
		var held map[string]json.RawMessage
		_ = json.Unmarshal(top["budgets"], &held)
		unique := map[string]json.RawMessage{}
		for _, b := range budgets {
			unique[b] = nil
		}
		assert.Equal(t, len(held), len(unique))
	})
}
