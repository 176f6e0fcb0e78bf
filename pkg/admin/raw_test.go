package admin

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var rawSamples = []json.RawMessage{
	json.RawMessage(`{"name":"a","config":{"url":"http://x/?a=1"}}`),
	json.RawMessage(`{"name": "spaced", "config": {"q": "a b"}}`),
	json.RawMessage(`{"name":"html","config":{"url":"http://x/?a=1&b=<2>"}}`),
	json.RawMessage(`{"name":"separators","labels":{"x":"a` + "\u2028" + `b` + "\u2029" + `"}}`),
	json.RawMessage(`{"name":"escaped \" quote","x":"\\"}`),
	json.RawMessage("{\"name\":\"tab\",\n\t\"x\":[1, 2]}"),
	json.RawMessage(`{"name":"é ☃"}`),
	json.RawMessage(`null`),
	json.RawMessage(` 12 `),
}

// An apply request is sent as json.Marshal writes it, its connectors
// copied when json.Marshal would not change them.
func TestApplyRequestIsWhatMarshalWrites(t *testing.T) {
	for _, req := range []ApplyRequest{
		{},
		{Connectors: []json.RawMessage{}},
		{Connectors: rawSamples, DryRun: true},
		{Connectors: rawSamples[:1], Budgets: map[string]json.RawMessage{"b": json.RawMessage(`{"limit": 1, "per": "1s"}`), "a&": json.RawMessage(`{}`)}},
		{Budgets: map[string]json.RawMessage{}},
	} {
		want, err := json.Marshal(req)
		require.NoError(t, err)
		got, err := req.encode()
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got))
	}
	assert.True(t, asMarshaled(rawSamples[0]), "a compact definition is copied")
	assert.True(t, asMarshaled(rawSamples[4]), "escapes are not spaces")
	_, err := ApplyRequest{Connectors: []json.RawMessage{json.RawMessage(`{"a": }`)}}.encode()
	assert.Error(t, err, "json.Marshal's error, for what it reads")
}

func FuzzAppendRaw(f *testing.F) {
	for _, raw := range rawSamples {
		f.Add(string(raw))
	}
	f.Fuzz(func(t *testing.T, data string) {
		want, err := json.Marshal(json.RawMessage(data))
		if err != nil {
			return // not JSON: the connectors of a request always are
		}
		got, err := AppendRaw([]byte("x"), json.RawMessage(data))
		require.NoError(t, err)
		assert.Equal(t, "x"+string(want), string(got))
	})
}
