package redact

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedactorJSON(t *testing.T) {
	r := New("s3cret-token")
	tests := []struct {
		name, in, want string
	}{
		{"a value", `{"echo": "s3cret-token"}`, `{"echo": "[REDACTED]"}`},
		{"inside a longer string", `{"url": "https://x/y?token=s3cret-token&page=2"}`, `{"url": "https://x/y?token=[REDACTED]&page=2"}`},
		{"a key", `{"s3cret-token": 1}`, `{"[REDACTED]": 1}`},
		{"nested in lists", `[[{"a": ["s3cret-token"]}]]`, `[[{"a": ["[REDACTED]"]}]]`},
		{"escaped to hide it", `{"echo": "s3\u0063ret-token"}`, `{"echo": "[REDACTED]"}`},
		{"escapes kept around it", `{"echo": "line\tone s3cret-token\"q\""}`, `{"echo": "line\tone [REDACTED]\"q\""}`},
		{"numbers and literals untouched", `{"n": 12, "b": true, "z": null}`, `{"n": 12, "b": true, "z": null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.JSON([]byte(tt.in))
			assert.Equal(t, tt.want, string(got))
			assert.True(t, json.Valid(got), "still JSON: %s", got)
		})
	}
	t.Run("a one-letter secret next to an escape stays valid JSON", func(t *testing.T) {
		got := New("n").JSON([]byte(`{"m": "a\nb", "k": "on"}`))
		assert.Equal(t, `{"m": "a\nb", "k": "o[REDACTED]"}`, string(got))
		assert.True(t, json.Valid(got))
	})
}

func TestRedactorJSONWithoutSecretsDoesNotCopy(t *testing.T) {
	data := []byte(`{"title": "an ordinary item", "n": 1}`)
	got := New("s3cret-token").JSON(data)
	assert.Same(t, &data[0], &got[0])
	var nilRedactor *Redactor
	got = nilRedactor.JSON(data)
	assert.Same(t, &data[0], &got[0])
}

func TestRedactorJSONLeavesNoSecretInAnyString(t *testing.T) {
	secret := `p@ss/word"with\quotes`
	r := New(secret)
	encoded, err := json.Marshal(map[string]any{"a": secret, "b": []string{"x" + secret + "y"}, secret: "k"})
	require.NoError(t, err)
	got := r.JSON(encoded)
	require.True(t, json.Valid(got))
	var back map[string]any
	require.NoError(t, json.Unmarshal(got, &back))
	flat, _ := json.Marshal(back)
	var text string
	require.NoError(t, json.Unmarshal([]byte(`"`+strings.ReplaceAll(string(flat), `"`, `\"`)+`"`), &text))
	assert.NotContains(t, text, secret)
	assert.Equal(t, "[REDACTED]", back["a"])
	assert.Equal(t, []any{"x[REDACTED]y"}, back["b"])
}

func BenchmarkRedactorJSON(b *testing.B) {
	r := New("s3cret-token", "another-secret-value")
	data := []byte(strings.Repeat(`{"id": "item-1", "title": "an ordinary item with some text", "n": 12345},`, 200))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		_ = r.JSON(data)
	}
}
