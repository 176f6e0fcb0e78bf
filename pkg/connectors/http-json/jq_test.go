package httpjson

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
)

func TestItems(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		config     map[string]any
		wantIDs    []string
		wantFailed map[string]string // ItemError.ID → part of its error
		wantCursor string
	}{
		{
			name:   "ids that are not usable fail alone, named by position",
			body:   `{"data":[{"id":"a"},{"id":null},{"id":""},{"id":{"x":1}},{"no":1},{"id":3.5},{"id":12345678901234567890},{"id":[1,2]},{"id":true}]}`,
			config: map[string]any{"items": ".data", "id": ".id"},
			// Numbers keep every digit (no float64 rounding).
			wantIDs: []string{"a", "3.5", "12345678901234567890"},
			wantFailed: map[string]string{
				"items[1]": "id: yields null; want a non-empty string or a number",
				"items[2]": "id: yields an empty string",
				"items[3]": "id: yields an object; want a non-empty string or a number",
				"items[4]": "id: yields null",
				"items[7]": "id: yields an array",
				"items[8]": "id: yields a boolean (true)",
			},
		},
		{
			name:       "a jq runtime error fails that item only",
			body:       `{"data":[{"id":1,"name":"a"},{"id":2,"name":5},{"id":3,"name":"c"}]}`,
			config:     map[string]any{"items": ".data", "id": ".id", "data": "{id, name: (.name | ascii_upcase)}"},
			wantIDs:    []string{"1", "3"},
			wantFailed: map[string]string{"2": "items[1]: data: jq: ascii_upcase cannot be applied to: number (5)"},
		},
		{
			name:       "an id jq error is named by position",
			body:       `[{"id":"a"},{"id":7}]`,
			config:     map[string]any{"items": ".", "id": `.id | ascii_downcase`},
			wantIDs:    []string{"a"},
			wantFailed: map[string]string{"items[1]": "id: jq: ascii_downcase cannot be applied to: number (7)"},
		},
		{
			name:       "error() in a version fails the item",
			body:       `[{"id":"a","v":1},{"id":"b"}]`,
			config:     map[string]any{"items": ".", "id": ".id", "version": `.v // error("no v")`},
			wantIDs:    []string{"a"},
			wantFailed: map[string]string{"b": "items[1]: version: jq: error: no v"},
		},
		{
			name:       "an expression with two values fails the item",
			body:       `[{"id":"a","tags":["x"]},{"id":"b","tags":["x","y"]}]`,
			config:     map[string]any{"items": ".", "id": ".id", "version": ".tags[]"},
			wantIDs:    []string{"a"},
			wantFailed: map[string]string{"b": "items[1]: version: yields more than one value"},
		},
		{
			name:       "a stream of objects",
			body:       `{"a":[{"id":"x"}],"b":{"id":"y"}}`,
			config:     map[string]any{"items": ".a[], .b", "id": ".id"},
			wantIDs:    []string{"x", "y"},
			wantFailed: map[string]string{},
		},
		{
			name:       "time: the greatest string; null times are left out; a non-scalar time fails",
			body:       `[{"id":"a","t":"2024-01-02"},{"id":"b","t":null},{"id":"c","t":"2024-03-01"},{"id":"d","t":{"x":1}}]`,
			config:     map[string]any{"items": ".", "id": ".id", "time": ".t", "cursor_kind": "string"},
			wantIDs:    []string{"a", "b", "c"},
			wantFailed: map[string]string{"d": "items[3]: time: yields an object; want a string as cursor_kind says"},
			wantCursor: "2024-03-01",
		},
		{
			name:       "time: numbers compare as numbers",
			body:       `[{"id":"a","t":9},{"id":"b","t":10},{"id":"c","t":1e1}]`,
			config:     map[string]any{"items": ".", "id": ".id", "time": ".t", "cursor_kind": "number"},
			wantIDs:    []string{"a", "b", "c"},
			wantFailed: map[string]string{},
			wantCursor: "10",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ct.Replay(t, ct.Any(jsonAnswer(tt.body)))
			cfg := map[string]any{"url": srv.URL + "/items"}
			for k, v := range tt.config {
				cfg[k] = v
			}
			c := newConnector(t, srv, cfg)

			res, err := c.Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			assert.Equal(t, tt.wantIDs, ct.ItemIDs(res.Items))
			failed := map[string]string{}
			for _, f := range res.Failed {
				failed[f.ID] = f.Err.Error()
			}
			require.Len(t, failed, len(tt.wantFailed), "failed: %v", failed)
			for id, want := range tt.wantFailed {
				assert.Contains(t, failed[id], want, "item %s", id)
			}
			assert.Equal(t, tt.wantCursor, res.State.Cursor)
		})
	}
}

func TestDefaultVersion(t *testing.T) {
	original := ct.Load(t, fixtureUSGS).Body
	// The same features, keys in another order and re-indented.
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(original))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&doc))
	reformatted, err := json.MarshalIndent(doc, "", "    ")
	require.NoError(t, err)
	// The first earthquake revised.
	revised := bytes.Replace(original, []byte(`"mag":1.93,`), []byte(`"mag":2.01,`), 1)
	require.NotEqual(t, original, revised)

	poll := func(body []byte) []string {
		srv := ct.Replay(t, ct.Any(jsonAnswer(string(body))))
		c := newConnector(t, srv, map[string]any{"url": srv.URL, "items": ".features[]", "id": ".id"})
		res, err := c.Poll(t.Context(), connector.State{})
		require.NoError(t, err)
		require.Equal(t, usgsIDs, ct.ItemIDs(res.Items))
		return ct.ItemVersions(res.Items)
	}
	base := poll(original)
	for _, v := range base {
		assert.Regexp(t, `^[0-9a-f]{64}$`, v)
	}
	assert.Equal(t, base, poll(reformatted), "key order and whitespace do not change a version")
	changed := poll(revised)
	assert.NotEqual(t, base[0], changed[0], "a changed item gets a new version")
	assert.Equal(t, base[1:], changed[1:], "the others keep theirs")
}

func TestCompiledExpressionsAreShared(t *testing.T) {
	a, err := compileJQ(".features[] | {id}")
	require.NoError(t, err)
	b, err := compileJQ(".features[] | {id}")
	require.NoError(t, err)
	assert.Same(t, a, b, "one expression is compiled once, whichever connector uses it")

	src := ".only_here | ." + t.Name()
	_, err = compileJQ(src)
	require.NoError(t, err)
	assert.Eventually(t, func() bool {
		runtime.GC()
		jqCode.mu.Lock()
		defer jqCode.mu.Unlock()
		_, kept := jqCode.m[src]
		return !kept
	}, 5*time.Second, 10*time.Millisecond, "code no connector holds is dropped from the cache")
	runtime.KeepAlive(a)
}

func TestPlainPaths(t *testing.T) {
	for src, want := range map[string][]string{
		".": {}, ".items": {"items"}, " .properties.updated ": {"properties", "updated"}, "._x1": {"_x1"},
		".items[]": nil, ".a | .b": nil, `."a b"`: nil, ".a?": nil, "..": nil, ".1": nil, ".a.b | length": nil,
	} {
		q, err := compileJQ(src)
		require.NoError(t, err, src)
		if want == nil {
			assert.Nil(t, q.path, "%q runs as jq", src)
		} else {
			assert.Equal(t, want, q.path, "%q is looked up", src)
		}
	}
}

// A plain path looked up yields what jq yields, on every recorded answer:
// objects, null, missing keys and numbers as they were, and on anything
// else jq's own error.
func TestPlainPathsYieldWhatJQYields(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	var docs []any
	for _, f := range files {
		if strings.HasSuffix(f, ".headers.json") {
			continue
		}
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		doc, err := decode(raw)
		require.NoError(t, err, f)
		docs = append(docs, doc)
		// and each element of its first array, as items are
		if list, ok := doc.([]any); ok {
			docs = append(docs, list...)
		}
		if o, ok := doc.(map[string]any); ok {
			for _, v := range o {
				if list, ok := v.([]any); ok {
					docs = append(docs, list...)
					break
				}
			}
		}
	}
	docs = append(docs, nil, "text", json.Number("12345678901234567890"), []any{1}, map[string]any{"a": nil})
	require.Greater(t, len(docs), 30)

	run := func(iter interface{ Next() (any, bool) }) (out []any) {
		for {
			v, ok := iter.Next()
			if !ok {
				return out
			}
			if err, isErr := v.(error); isErr {
				v = "error: " + err.Error()
			}
			out = append(out, v)
		}
	}
	looked := 0
	for _, src := range []string{".", ".features", ".items", ".id", ".properties.updated", ".properties.id",
		".data", ".messages", ".user.login", ".a.b.c", ".number", ".features.id"} {
		q, err := compileJQ(src)
		require.NoError(t, err)
		require.NotNil(t, q.path, src)
		for i, doc := range docs {
			if _, ok := q.lookup(doc); ok {
				looked++
			}
			assert.Equal(t, run(q.code.RunWithContext(t.Context(), doc)), run(q.run(t.Context(), doc)), "%s on doc %d", src, i)
		}
	}
	assert.Greater(t, looked, 100, "most lookups did not fall back to jq")
}
