package redact

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedactorString(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{"no secrets", nil, "token abc", "token abc"},
		{"one secret", []string{"s3cr3t"}, "Bearer s3cr3t", "Bearer [REDACTED]"},
		{"every occurrence", []string{"s3cr3t"}, "s3cr3t and s3cr3t", "[REDACTED] and [REDACTED]"},
		{"longest first", []string{"ab", "abcd"}, "xabcdx", "x[REDACTED]x"},
		{"overlapping secrets", []string{"cdef", "abcd"}, "abcdef", "[REDACTED]ef"},
		{"short secret still redacted", []string{"pw"}, "user:pw", "user:[REDACTED]"},
		{"empty strings ignored", []string{"", "tok"}, "a tok b", "a [REDACTED] b"},
		{"duplicates", []string{"tok", "tok"}, "tok", "[REDACTED]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, New(tt.secrets...).String(tt.in))
		})
	}
}

func TestRedactorSetReplacesTheSet(t *testing.T) {
	r := New("old-secret")
	r.Set([]string{"new-secret"})
	assert.Equal(t, "old-secret [REDACTED]", r.String("old-secret new-secret"))

	r.Set(nil)
	assert.Equal(t, "new-secret", r.String("new-secret"))
}

func TestRedactorAddKeepsTheSet(t *testing.T) {
	r := New("first-secret")
	r.Add("second", "")
	assert.Equal(t, "[REDACTED] [REDACTED] empty", r.String("first-secret second empty"))

	before := r.load()
	r.Add("second", "first-secret")
	assert.Same(t, before, r.load(), "secrets already held build no new set")

	r.Add("sec")
	assert.Equal(t, "[REDACTED] [REDACTED]", r.String("second sec"), "longest first, across adds")
	assert.Greater(t, r.load().generation, before.generation, "a log handler redacts its attributes again")

	r.Set([]string{"other"})
	assert.Equal(t, "second [REDACTED]", r.String("second other"), "Set still replaces what Add added")
}

func TestRedactorConcurrentAddsAllHold(t *testing.T) {
	r := New()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				r.Add(fmt.Sprintf("secret-%d-%d", i, j))
			}
		})
	}
	wg.Wait()
	for i := range 8 {
		for j := range 50 {
			assert.Equal(t, Mask, r.String(fmt.Sprintf("secret-%d-%d", i, j)), "no add is lost to a concurrent one")
		}
	}
}

func TestNilRedactorIsANoOp(t *testing.T) {
	var r *Redactor
	r.Set([]string{"x"})
	r.Add("x")
	assert.Equal(t, "x", r.String("x"))
	err := errors.New("x")
	assert.Same(t, err, r.Error(err))
	assert.NoError(t, r.Error(nil))
}

func TestRedactorErrorKeepsIdentity(t *testing.T) {
	r := New("hunter2")
	err := fmt.Errorf("open with password hunter2: %w", fs.ErrPermission)

	got := r.Error(err)

	assert.Equal(t, "open with password [REDACTED]: permission denied", got.Error())
	assert.ErrorIs(t, got, fs.ErrPermission)
	var pathErr *fs.PathError
	wrapped := r.Error(&fs.PathError{Op: "open", Path: "/hunter2", Err: fs.ErrNotExist})
	require.ErrorAs(t, wrapped, &pathErr)
	assert.Equal(t, "open /[REDACTED]: file does not exist", wrapped.Error())
}

func TestRedactorConcurrentUse(t *testing.T) {
	r := New("a-secret")
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				if i == 0 {
					r.Set([]string{fmt.Sprintf("secret-%d", j), "a-secret"})
					continue
				}
				assert.Equal(t, "[REDACTED]", r.String("a-secret"))
			}
		})
	}
	wg.Wait()
}

func TestURL(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"token param", "https://x/y?token=abc&page=2", "https://x/y?token=[REDACTED]&page=2"},
		{"case-insensitive names", "https://x/y?Access_Token=abc&API_KEY=k&ApiKey=k2", "https://x/y?Access_Token=[REDACTED]&API_KEY=[REDACTED]&ApiKey=[REDACTED]"},
		{"every listed name", "https://x/?key=1&secret=2&password=3&signature=4&sig=5&auth=6&client_secret=7",
			"https://x/?key=[REDACTED]&secret=[REDACTED]&password=[REDACTED]&signature=[REDACTED]&sig=[REDACTED]&auth=[REDACTED]&client_secret=[REDACTED]"},
		{"suffixes and dashes", "https://s3/o?X-Amz-Signature=abc&refresh_token=r&api-key=k",
			"https://s3/o?X-Amz-Signature=[REDACTED]&refresh_token=[REDACTED]&api-key=[REDACTED]"},
		{"harmless params kept", "https://x/y?page=2&q=a%20b&keyword=go", "https://x/y?page=2&q=a%20b&keyword=go"},
		{"userinfo password", "redis://default:p%40ss@redis:6379/0", "redis://default:[REDACTED]@redis:6379/0"},
		{"username only kept", "https://bob@x/y", "https://bob@x/y"},
		{"fragment token", "https://x/cb#access_token=abc&state=s", "https://x/cb#access_token=[REDACTED]&state=s"},
		{"plain url unchanged", "https://api.github.com/repos/nats-io/nats-server/releases", "https://api.github.com/repos/nats-io/nats-server/releases"},
		{"unparsable replaced whole", "http://[::1%zz/?token=abc", "[REDACTED]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, URL(tt.in))
		})
	}
}

func TestURLsIn(t *testing.T) {
	in := `poll x: Get "https://api.example.com/v1/items?page=2&api_key=s3cr3t": dial tcp: refused`
	out := URLsIn(in)
	assert.NotContains(t, out, "s3cr3t")
	assert.Contains(t, out, "https://api.example.com/v1/items?page=2&api_key=[REDACTED]")
	assert.Contains(t, out, "dial tcp: refused")
	assert.Equal(t, "no url here", URLsIn("no url here"))
}
