package catalog

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A part is checked and stored as json.Marshal writes it: partFile writes
// the same bytes, copying what json.Marshal would not change.
func TestPartFileIsWhatMarshalWrites(t *testing.T) {
	connectors := []json.RawMessage{
		json.RawMessage(`{"name":"a","config":{"url":"http://x/?a=1"}}`),
		json.RawMessage(`{"name": "spaced", "config": {"q": "a b"}}`),
		json.RawMessage(`{"name":"html","config":{"url":"http://x/?a=1&b=<2>"}}`),
		json.RawMessage(`{"name":"separators","labels":{"x":"a` + "\u2028" + `b` + "\u2029" + `"}}`),
		json.RawMessage(`{"name":"escaped \" quote","x":"\\"}`),
		json.RawMessage("{\"name\":\"tab\",\n\t\"x\":[1, 2]}"),
		json.RawMessage(`{"name":"é ☃"}`),
		json.RawMessage(`null`),
	}
	for _, budgets := range []map[string]json.RawMessage{nil, {}, {"b": json.RawMessage(`{"limit": 1, "per": "1s"}`), "a&": json.RawMessage(`{}`)}} {
		file := map[string]any{"connectors": connectors}
		if len(budgets) > 0 {
			file["budgets"] = budgets
		}
		want, err := json.Marshal(file)
		require.NoError(t, err)
		got, err := partFile(connectors, budgets)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got))
	}
}

func FuzzPartFile(f *testing.F) {
	for _, seed := range []string{`{"a":"b c"}`, `{"a": 1}`, `"\\\""`, `"<"`, "\"\u2028\"", `[1,"\u0026"]`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		raw := json.RawMessage(data)
		want, err := json.Marshal(raw)
		if err != nil {
			return // not JSON: a request's connectors always are
		}
		got, err := partFile([]json.RawMessage{raw}, nil)
		require.NoError(t, err)
		assert.Equal(t, `{"connectors":[`+string(want)+`]}`, string(got))
	})
}
