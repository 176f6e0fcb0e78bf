package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDuplicateKeys(t *testing.T) {
	for _, tt := range []struct {
		name, data string
		want       []duplicate
	}{
		{"none", `{"a": 1, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}]}`, nil},
		{"top level", `{"a": 1,` + "\n" + `"a": 2}`, []duplicate{{"", "a", 2}}},
		{"in an array element", `{"x": [{}, {"id": 1, "id": 2}]}`, []duplicate{{"x[1]", "id", 1}}},
		{"deep", `{"a": {"b": [[{"c": {"k": 1, "k": 2}}]]}}`, []duplicate{{"a.b[0][0].c", "k", 1}}},
		{"escaped spelling of the same key", `{"key": 1, "k\u0065y": 2}`, []duplicate{{"", "key", 1}}},
		{"strings that look like keys", `{"a": "b", "c": ["a", "a"], "d": "{\"a\": 1, \"a\": 2}"}`, nil},
		{"escaped quote in a key", `{"a\"b": 1, "a\"b": 2}`, []duplicate{{"", `a"b`, 1}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, duplicateKeys([]byte(tt.data)))
		})
	}
}

func TestDuplicateKeysInALargeObject(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 100_000 {
		fmt.Fprintf(&b, `"k%d": %d,`, i, i)
	}
	b.WriteString(`"k99999": 0}`)
	assert.Equal(t, []duplicate{{"", "k99999", 1}}, duplicateKeys([]byte(b.String())))
}

func TestDuplicateKeysDeepNesting(t *testing.T) {
	// 10,000 levels: one pass, and no path built unless a key repeats.
	data := strings.Repeat(`{"a":`, 10_000) + `{"k": 1, "k": 2}` + strings.Repeat("}", 10_000)
	dups := duplicateKeys([]byte(data))
	if assert.Len(t, dups, 1) {
		assert.Equal(t, "k", dups[0].key)
		assert.Equal(t, strings.Repeat("a.", 9_999)+"a", dups[0].path)
	}
}

func TestObjectFieldsAndListItemsSplitAsUnmarshal(t *testing.T) {
	for _, data := range []string{
		`{}`, ` { } `, `null`, `{"a": 1}`, "{\n\t\"a\" : [1, {\"b\": \"]}\\\"\"}], \"c\": null , \"d\":true}",
		`{"a": 1, "a": [2]}`, `{"k\u0065y": "v", "x": {"y": [[], {}]}, "n": -1.5e3}`,
		`{"connectors": [{"name": "a"}, 2, "s", [3, [4]], null, true], "budgets": {}}`,
	} {
		t.Run(data, func(t *testing.T) {
			var want map[string]json.RawMessage
			require.NoError(t, json.Unmarshal([]byte(data), &want))
			got, ok := objectFields([]byte(data))
			assert.True(t, ok)
			assert.Equal(t, want, got)
			for key, raw := range want {
				var wantItems []json.RawMessage
				if json.Unmarshal(raw, &wantItems) != nil || wantItems == nil { // null is no list either
					_, isList := listItems(raw)
					assert.False(t, isList, key)
					continue
				}
				gotItems, isList := listItems(raw)
				assert.True(t, isList, key)
				assert.Equal(t, len(wantItems), len(gotItems), key)
				for i := range wantItems {
					assert.Equal(t, string(wantItems[i]), string(gotItems[i]), key)
				}
			}
		})
	}
	for _, data := range []string{`[]`, `"s"`, `1`, `true`} {
		_, ok := objectFields([]byte(data))
		assert.False(t, ok, data)
	}
}
