package upstream

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordedHeader reads the headers of a recorded answer in testdata/.
func recordedHeader(t *testing.T, name string) http.Header {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	var recorded struct {
		Headers [][2]string `json:"headers"`
	}
	require.NoError(t, json.Unmarshal(raw, &recorded))
	h := http.Header{}
	for _, pair := range recorded.Headers {
		h.Add(pair[0], pair[1])
	}
	return h
}

func TestNextLinkOnRecordedHeaders(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"github_list_issues_page1.headers.json", "https://api.github.com/repositories/515435940/issues?per_page=3&page=2"},
		{"github_list_issues_page2.headers.json", "https://api.github.com/repositories/515435940/issues?per_page=3&page=3"},
		{"github_list_issues_page5_last.headers.json", ""},
		{"github_list_releases_2013_page1.headers.json", "https://api.github.com/repos/api-playground/<GITHUB_TEST_REPOSITORY>/releases?page=2"},
		{"atlassian_confluence_v2_blogposts_page1.headers.json",
			"/wiki/api/v2/blogposts?limit=2&cursor=eyJpZCI6Ijc1MzY2OSIsImNvbnRlbnRPcmRlciI6ImlkIiwiY29udGVudE9yZGVyVmFsdWUiOjc1MzY2OX0="},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			assert.Equal(t, tt.want, NextLink(recordedHeader(t, tt.file)))
		})
	}
}

func TestParseLinksOnRecordedHeaders(t *testing.T) {
	page2 := ParseLinks(recordedHeader(t, "github_list_issues_page2.headers.json").Values("Link"))
	require.Len(t, page2, 4)
	var rels []string
	for _, l := range page2 {
		rels = append(rels, l.Rel...)
	}
	assert.Equal(t, []string{"prev", "next", "last", "first"}, rels)

	atlassian := ParseLinks(recordedHeader(t, "atlassian_confluence_v2_blogposts_page1.headers.json").Values("Link"))
	require.Len(t, atlassian, 2)
	assert.Equal(t, Link{Target: "https://withampersand-team-oqo0hkaj.atlassian.net/wiki", Rel: []string{"base"}}, atlassian[1])

	// The relative target resolves against the page it came from, on the
	// same host, so NextPage follows it.
	page, err := url.Parse("https://withampersand-team-oqo0hkaj.atlassian.net/wiki/api/v2/blogposts?limit=2")
	require.NoError(t, err)
	next, err := NextPage(page, atlassian[0].Target, page, "config.base_url")
	require.NoError(t, err)
	assert.Equal(t, "https://withampersand-team-oqo0hkaj.atlassian.net/wiki/api/v2/blogposts?limit=2&cursor=eyJpZCI6Ijc1MzY2OSIsImNvbnRlbnRPcmRlciI6ImlkIiwiY29udGVudE9yZGVyVmFsdWUiOjc1MzY2OX0=",
		next.String())
}

func TestParseLinksEdgeCases(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string // NextLink; "" for none
	}{
		{name: "a comma inside the URL", values: []string{`<https://api.github.com/repos/o/r/issues?labels=bug,ui&page=2>; rel="next"`},
			want: "https://api.github.com/repos/o/r/issues?labels=bug,ui&page=2"},
		{name: "unquoted rel, quoted params with , and ;", values: []string{`<https://x.example/a?page=2> ;title="a, b; c" ; rel=next`},
			want: "https://x.example/a?page=2"},
		{name: "an escaped quote in a param", values: []string{`<https://x.example/1>; title="say \"hi\", then"; rel="prev", <https://x.example/3>; rel="next"`},
			want: "https://x.example/3"},
		{name: "several relation types", values: []string{`<https://x.example/a?page=9>; rel="last next"`}, want: "https://x.example/a?page=9"},
		{name: "rel is matched whole, not as a prefix", values: []string{`<https://x.example/a?page=2>; rel="nextpage"`}},
		{name: "only the first rel counts", values: []string{`<https://x.example/a>; rel="prev"; rel="next"`}},
		{name: "rel is case-insensitive", values: []string{`<https://x.example/b>; REL="Next"`}, want: "https://x.example/b"},
		{name: "two header lines", values: []string{`<https://x.example/a?page=1>; rel="prev"`, `<https://x.example/a?page=3>; rel="next"`},
			want: "https://x.example/a?page=3"},
		{name: "no Link header"},
		{name: "garbage", values: []string{`next page please`}},
		{name: "unclosed target", values: []string{`<https://x.example/a?page=2; rel="next"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.values {
				h.Add("Link", v)
			}
			assert.Equal(t, tt.want, NextLink(h))
		})
	}
}
