package upstream

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBaseURL(t *testing.T) {
	const example = "https://api.example.com"
	tests := []struct {
		name    string
		raw     string
		want    string
		wantErr string
	}{
		{name: "root", raw: "https://api.weather.gov", want: "https://api.weather.gov"},
		{name: "trailing slash dropped", raw: "https://ghe.example/api/v3/", want: "https://ghe.example/api/v3"},
		{name: "http and a port", raw: "http://127.0.0.1:8080/mirror", want: "http://127.0.0.1:8080/mirror"},
		{name: "empty", raw: "", wantErr: `config.base_url: required (write an absolute http(s) URL, e.g. "https://api.example.com")`},
		{name: "unparsable", raw: "http://[::1", wantErr: `config.base_url: cannot be parsed as a URL (write an absolute http(s) URL, e.g. "https://api.example.com")`},
		{name: "no scheme", raw: "api.weather.gov", wantErr: `config.base_url: "api.weather.gov" is not an absolute http(s) URL (write e.g. "https://api.example.com")`},
		{name: "ftp", raw: "ftp://mirror.example", wantErr: `config.base_url: "ftp://mirror.example" is not an absolute http(s) URL`},
		{name: "query", raw: "https://me:SECRET@x.example/api?key=SECRET", wantErr: `config.base_url: "https://me:xxxxx@x.example/api?key=xxxxx" must not carry a query (write the API root, e.g. "https://api.example.com")`},
		{name: "fragment", raw: "https://x.example/api#top", wantErr: `config.base_url: "https://x.example/api" has a #fragment, which is never sent (remove it)`},
		{name: "credentials without a scheme are not shown", raw: "me:SECRET@x.example", wantErr: `config.base_url: "(URL not shown: it contains an @ that may hide a password)" is not an absolute http(s) URL`},
		{name: "an @ in the path is not shown", raw: "x.example/me:SECRET@y", wantErr: `config.base_url: "(URL not shown: it contains an @ that may hide a password)" is not an absolute http(s) URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseBaseURL("config.base_url", tt.raw, example)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.NotContains(t, err.Error(), "SECRET")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, u.String())
		})
	}
}

func TestParseURLKeepsTheQuery(t *testing.T) {
	u, err := ParseURL("config.url", "https://example.com/feed.rss?token=abc&x", "https://example.com/feed.rss")
	require.NoError(t, err)
	assert.Equal(t, "token=abc&x", u.RawQuery)
}

func TestShowURL(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"https://api.github.com/repos/o/r/issues", "https://api.github.com/repos/o/r/issues"},
		{"https://me:pw@ghe.example/api/v3", "https://me:xxxxx@ghe.example/api/v3"},
		{"https://example.com/feed.rss?token=SECRET&format=rss", "https://example.com/feed.rss?token=xxxxx&format=xxxxx"},
		{"https://example.com/x?flag", "https://example.com/x?flag"},
		{"https://example.com/x#frag", "https://example.com/x"},
		{"https://example.com/x?next=a@b", "https://example.com/x?next=xxxxx"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			assert.Equal(t, tt.want, ShowRawURL(tt.raw))
		})
	}
	assert.Empty(t, ShowURL(nil))
	assert.Equal(t, "(URL not shown: it does not parse)", ShowRawURL("http://[::1"))
}

func TestNextPage(t *testing.T) {
	origin, err := url.Parse("https://api.weather.gov")
	require.NoError(t, err)
	page, err := url.Parse("https://api.weather.gov/alerts?area=WI")
	require.NoError(t, err)
	tests := []struct {
		name, ref, want, wantErr string
	}{
		{name: "absolute, same host", ref: "https://api.weather.gov/alerts?cursor=abc", want: "https://api.weather.gov/alerts?cursor=abc"},
		{name: "relative", ref: "/alerts?cursor=abc", want: "https://api.weather.gov/alerts?cursor=abc"},
		{name: "host case differs", ref: "https://API.weather.gov/alerts?cursor=abc", want: "https://API.weather.gov/alerts?cursor=abc"},
		{name: "another host", ref: "https://evil.example/steal?key=SECRET",
			wantErr: `next page "https://evil.example/steal?key=xxxxx" leaves https://api.weather.gov; refusing to follow it (set config.base_url to the host the upstream links to)`},
		{name: "https to http", ref: "http://api.weather.gov/alerts", wantErr: "leaves https://api.weather.gov"},
		{name: "not http", ref: "ftp://api.weather.gov/x", wantErr: `next page "ftp://api.weather.gov/x" is not an http(s) URL`},
		{name: "unparsable", ref: "http://[::1", wantErr: `next page "(URL not shown: it does not parse)" is not a URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, err := NextPage(page, tt.ref, origin, "config.base_url")
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.NotContains(t, err.Error(), "SECRET")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, next.String())
		})
	}
}
