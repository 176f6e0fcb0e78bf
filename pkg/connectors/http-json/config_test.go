package httpjson

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
)

func TestConfig(t *testing.T) {
	base := `"url":"https://api.example.com/v1/items","items":".data","id":".id"`
	tests := []struct {
		name    string
		raw     string
		wantErr []string // every one must appear in the error
	}{
		// valid
		{name: "minimal", raw: `{` + base + `}`},
		{name: "everything", raw: `{"url":"https://api.example.com/v1/items?since={{cursor}}","method":"POST","body":"{\"after\":\"{{cursor}}\"}",
			"headers":{"Authorization":"Bearer abc"},"initial_cursor":"0","items":".data","id":".id","version":".rev","time":".updated",
			"cursor_kind":"number","cursor_margin":"60000","data":"{id}","pagination":{"style":"cursor","next":".next","param":"cursor","max_pages":100},"conditional":false}`},
		{name: "page style", raw: `{` + base + `,"pagination":{"style":"page","param":"p","start":0}}`},

		// url
		{name: "url missing", raw: `{"items":".","id":".id"}`,
			wantErr: []string{`config.url: required: write an absolute http(s) URL, e.g. "https://api.example.com/v1/items"`}},
		{name: "url relative", raw: `{"url":"api.example.com/items","items":".","id":".id"}`,
			wantErr: []string{`config.url: "api.example.com/items" is not an absolute http(s) URL`}},
		{name: "url ftp, password and query hidden", raw: `{"url":"ftp://me:pw1234@h.example/x?key=k9k9k9","items":".","id":".id"}`,
			wantErr: []string{`config.url: "ftp://me:xxxxx@h.example/x?key=xxxxx" is not an absolute http(s) URL`}},
		{name: "url unparsable", raw: `{"url":"http://[::1","items":".","id":".id"}`,
			wantErr: []string{"config.url: cannot be parsed as a URL"}},
		{name: "placeholder typo", raw: `{"url":"https://h.example/x?since={{ cursor }}","items":".","id":".id"}`,
			wantErr: []string{"config.url: {{ cursor }} is not a placeholder (the only one is {{cursor}}, written without spaces)"}},

		// cursor
		{name: "time without cursor_kind", raw: `{` + base + `,"time":".t"}`,
			wantErr: []string{`config.cursor_kind: required with time: say what time yields and how cursors compare (write "time" for RFC 3339 times, "number" or "string")`}},
		{name: "cursor_kind without time", raw: `{` + base + `,"cursor_kind":"time"}`,
			wantErr: []string{"config.cursor_kind: has no effect without time (set time, or remove cursor_kind)"}},
		{name: "unknown cursor_kind", raw: `{` + base + `,"time":".t","cursor_kind":"date"}`,
			wantErr: []string{`config.cursor_kind: "date" is not a valid cursor kind (write "time", "number" or "string")`}},
		{name: "time margin not a duration", raw: `{` + base + `,"time":".t","cursor_kind":"time","cursor_margin":"60"}`,
			wantErr: []string{`config.cursor_margin: "60" is not a duration (write e.g. "1m" or "90s")`}},
		{name: "number margin not a number", raw: `{` + base + `,"time":".t","cursor_kind":"number","cursor_margin":"1m"}`,
			wantErr: []string{`config.cursor_margin: "1m" is not a number of 0 or more`}},
		{name: "string margin", raw: `{` + base + `,"time":".t","cursor_kind":"string","cursor_margin":"1"}`,
			wantErr: []string{`config.cursor_margin: strings have no margin (cursor_kind is "string"; remove cursor_margin)`}},
		{name: "initial_cursor of another kind", raw: `{"url":"https://h.example/x?since={{cursor}}","items":".","id":".id","time":".t","cursor_kind":"time","initial_cursor":"15 minutes ago"}`,
			wantErr: []string{`config.initial_cursor: "15 minutes ago" is not an RFC 3339 time or "now-<n><s|m|h|d|w>" (cursor_kind is "time")`}},

		// method and body
		{name: "method lowercase", raw: `{` + base + `,"method":"get"}`,
			wantErr: []string{`config.method: "get" is not a valid method (write "GET"; default "GET")`}},
		{name: "body with GET", raw: `{` + base + `,"body":"{}"}`,
			wantErr: []string{`config.body: only sent with POST (set "method": "POST", or remove body)`}},
		{name: "initial_cursor without placeholder", raw: `{` + base + `,"initial_cursor":"x"}`,
			wantErr: []string{"config.initial_cursor: has no effect: neither url nor body contains {{cursor}}"}},

		// jq
		{name: "items missing", raw: `{"url":"https://h.example","id":".id"}`,
			wantErr: []string{`config.items: required: a jq expression (e.g. ".features[]" or ".data")`}},
		{name: "id missing", raw: `{"url":"https://h.example","items":"."}`,
			wantErr: []string{`config.id: required: a jq expression (e.g. ".id")`}},
		{name: "items does not parse", raw: `{"url":"https://h.example","items":".features[","id":".id"}`,
			wantErr: []string{`config.items: jq ".features[": unexpected EOF`}},
		{name: "id calls an unknown function", raw: `{"url":"https://h.example","items":".","id":".id | nosuch"}`,
			wantErr: []string{`config.id: jq ".id | nosuch": function not defined: nosuch/0`}},
		{name: "version with an unknown variable", raw: `{` + base + `,"version":"$cursor"}`,
			wantErr: []string{`config.version: jq "$cursor": variable not defined: $cursor`}},
		{name: "time and data bad", raw: `{` + base + `,"time":".a |","data":"{"}`,
			wantErr: []string{`config.time: jq ".a |": unexpected EOF`, `config.data: jq "{": unexpected EOF`}},

		// pagination
		{name: "unknown style", raw: `{` + base + `,"pagination":{"style":"links"}}`,
			wantErr: []string{`config.pagination.style: "links" is not a valid style (write "none", "link_header", "next_url", "cursor" or "page"; default "none")`}},
		{name: "next_url without next", raw: `{` + base + `,"pagination":{"style":"next_url"}}`,
			wantErr: []string{`config.pagination.next: required: a jq expression (e.g. ".pagination.next")`}},
		{name: "next does not parse", raw: `{` + base + `,"pagination":{"style":"cursor","next":".a[","param":"c"}}`,
			wantErr: []string{`config.pagination.next: jq ".a[": unexpected EOF`}},
		{name: "cursor without param", raw: `{` + base + `,"pagination":{"style":"cursor","next":".n"}}`,
			wantErr: []string{"config.pagination.param: required with style cursor"}},
		{name: "fields of another style", raw: `{` + base + `,"pagination":{"style":"link_header","next":".n","param":"p","start":1}}`,
			wantErr: []string{"config.pagination.next: only used with style next_url or cursor", "config.pagination.param: only used with style cursor or page",
				"config.pagination.start: only used with style page"}},
		{name: "max_pages out of range", raw: `{` + base + `,"pagination":{"style":"link_header","max_pages":101}}`,
			wantErr: []string{"config.pagination.max_pages: 101 is out of range (write a number from 1 to 100; default 10)"}},
		{name: "max_pages without a style", raw: `{` + base + `,"pagination":{"max_pages":3}}`,
			wantErr: []string{"config.pagination.max_pages: has no effect without a pagination style"}},
		{name: "negative start", raw: `{` + base + `,"pagination":{"style":"page","param":"p","start":-1}}`,
			wantErr: []string{"config.pagination.start: -1 is out of range (write a number of 0 or more; default 1)"}},

		// decoding
		{name: "unknown field", raw: `{` + base + `,"base_url":"https://h.example"}`,
			wantErr: []string{`config.base_url: unknown field (known: url, method, body, headers, initial_cursor, items, id, version, time, cursor_kind, cursor_margin, data, pagination, conditional, emit_deletes, allow_hosts)`}},
		{name: "empty config lists every problem", raw: ``,
			wantErr: []string{"config.url: required", "config.items: required", "config.id: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.wantErr) == 0 {
				c, err := New(json.RawMessage(tt.raw), connector.Deps{})
				require.NoError(t, err)
				assert.NotNil(t, c)
				return
			}
			err := ct.ConfigError(t, New, tt.raw, tt.wantErr...)
			assert.NotContains(t, err.Error(), "pw1234")
			assert.NotContains(t, err.Error(), "k9k9k9")
		})
	}
}

// TestREADMEConfigs keeps the README's stand-in entries valid and equal to
// the configs the stand-in tests run (apart from the host and the secret).
func TestREADMEConfigs(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	var entries []map[string]json.RawMessage
	for _, block := range strings.Split(string(readme), "```json")[1:] {
		block, _, _ = strings.Cut(block, "```")
		var entry map[string]json.RawMessage
		if json.Unmarshal([]byte(block), &entry) == nil && string(entry["type"]) == `"http-json"` {
			entries = append(entries, entry)
		}
	}
	require.Len(t, entries, 3, "the USGS, GitHub issues and Datadog entries")
	for i, want := range []map[string]any{usgsConfig("https://x"), githubIssuesConfig("https://x"), datadogConfig("https://x")} {
		_, err := New(entries[i]["config"], connector.Deps{})
		require.NoError(t, err, "README entry %d", i)
		var got map[string]any
		require.NoError(t, json.Unmarshal(entries[i]["config"], &got))
		for _, field := range []string{"items", "id", "version", "time", "cursor_kind", "cursor_margin", "data", "initial_cursor"} {
			assert.Equal(t, want[field], got[field], "README entry %d, %s", i, field)
		}
		wantPagination, _ := json.Marshal(want["pagination"])
		gotPagination, _ := json.Marshal(got["pagination"])
		assert.JSONEq(t, string(wantPagination), string(gotPagination), "README entry %d pagination", i)
	}
}
