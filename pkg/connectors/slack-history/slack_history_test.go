package slackhistory

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	ct "github.com/pollgrid/pollgrid/pkg/connectortest"
)

// The fixtures are Slack's documentation examples for conversations.history
// (see shared/fixtures/PROVENANCE.md). Two of them show the same message,
// so a poll that reads both sees it twice.
const (
	fixturePage1     = "conversations_history_page1.json"
	fixtureBots      = "conversations_history_bot_attachments.json"
	fixtureInclusive = "conversations_history_latest_inclusive.json"
	fixtureError     = "conversations_history_error.json"

	testToken   = "xoxb-test-token"
	testChannel = "C0123ABCD"

	page1NextCursor = "bmV4dF90czoxNTEyMDg1ODYxMDAwNTQz"
)

// answer is an answer as Slack sends it.
func answer(status int, body []byte) ct.Response {
	return ct.Response{Status: status, Header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}, Body: body}
}

// newPoller builds the connector through the public factory, pointed at f.
func newPoller(t *testing.T, f *ct.Server, config map[string]any) connector.Connector {
	t.Helper()
	cfg := map[string]any{"base_url": f.URL + "/api", "token": testToken, "channel": testChannel}
	for k, v := range config {
		cfg[k] = v
	}
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	c, err := New(raw, connector.Deps{HTTP: f.Client()})
	require.NoError(t, err)
	return c
}

func decodeMessage(t *testing.T, item connector.Item) map[string]any {
	t.Helper()
	var data map[string]any
	require.NoError(t, json.Unmarshal(item.Data, &data))
	return data
}

func TestPollFixtures(t *testing.T) {
	tests := []struct {
		name       string
		fixture    string
		wantIDs    []string
		wantCursor string
		// the last item's data, all of it
		wantLast map[string]any
	}{
		{
			name: "page1", fixture: fixturePage1,
			wantIDs:    []string{"1512085950.000216", "1512104434.000490"},
			wantCursor: "1512104434.000490",
			wantLast: map[string]any{"ts": "1512104434.000490", "user": "U061F7AUR", "type": "message",
				"text": "What, you want to smell my shoes better?", "channel": testChannel},
		},
		{
			name: "bot attachments", fixture: fixtureBots,
			wantIDs:    []string{"1512085950.000216", "1512085950.218404"},
			wantCursor: "1512085950.218404",
			wantLast: map[string]any{"ts": "1512085950.218404", "user": "U061F7AUR", "type": "message",
				"text": "Isn't this whether dreadful? <https://badpuns.example.com/puns/123>", "channel": testChannel},
		},
		{
			name: "latest inclusive", fixture: fixtureInclusive,
			wantIDs:    []string{"1512085950.000216"},
			wantCursor: "1512085950.000216",
			wantLast: map[string]any{"ts": "1512085950.000216", "user": "U012AB3CDE", "type": "message",
				"text": "I find you punny and would like to smell your nose letter", "channel": testChannel},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ct.Replay(t, ct.Any(answer(200, ct.Load(t, tt.fixture).Body)))
			c := newPoller(t, f, map[string]any{"max_pages": 1})

			res, err := c.Poll(t.Context(), connector.State{})
			require.NoError(t, err)

			assert.Empty(t, res.Failed)
			assert.Equal(t, tt.wantIDs, ct.ItemIDs(res.Items))
			last := res.Items[len(res.Items)-1]
			assert.Equal(t, last.ID, last.Version, "an unedited message's version is its ts")
			assert.Equal(t, tt.wantLast, decodeMessage(t, last))
			assert.Equal(t, connector.State{Cursor: tt.wantCursor}, res.State)

			reqs := f.Requests()
			require.Len(t, reqs, 1, "max_pages 1 stops after one page although has_more is true")
			assert.Equal(t, "/api/conversations.history", reqs[0].URL.Path)
			assert.Equal(t, url.Values{"channel": {testChannel}, "limit": {"200"}}, reqs[0].URL.Query(), "no cursor yet: no oldest")
			assert.Equal(t, "Bearer "+testToken, reqs[0].Header.Get("Authorization"))
		})
	}
}

func TestPagination(t *testing.T) {
	page1, bots := answer(200, ct.Load(t, fixturePage1).Body), answer(200, ct.Load(t, fixtureBots).Body)
	f := ct.Serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("cursor") == page1NextCursor {
			bots.ServeHTTP(w, r)
			return
		}
		page1.ServeHTTP(w, r)
	})
	c := newPoller(t, f, map[string]any{"max_pages": 2, "limit": 2})

	res, err := c.Poll(t.Context(), connector.State{Cursor: "1512000000.000100"})
	require.NoError(t, err)

	assert.Equal(t, []string{"1512085950.000216", "1512104434.000490", "1512085950.000216", "1512085950.218404"}, ct.ItemIDs(res.Items),
		"page 1, then page 2; the doc examples share a message")
	assert.Equal(t, "1512104434.000490", res.State.Cursor, "the newest ts, whichever page it was on")

	reqs := f.Requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, url.Values{"channel": {testChannel}, "limit": {"2"}, "oldest": {"1512000000.000100"}}, reqs[0].URL.Query())
	assert.Equal(t, url.Values{"channel": {testChannel}, "limit": {"2"}, "oldest": {"1512000000.000100"},
		"cursor": {page1NextCursor}}, reqs[1].URL.Query())
	assert.Equal(t, "Bearer "+testToken, reqs[1].Header.Get("Authorization"))
}

func TestPaginationEnds(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(page map[string]any)
		wantCalls int
	}{
		{name: "has_more false", mutate: func(p map[string]any) { p["has_more"] = false }, wantCalls: 1},
		{name: "no next_cursor", mutate: func(p map[string]any) { delete(p, "response_metadata") }, wantCalls: 1},
		{name: "the same cursor twice", mutate: func(map[string]any) {}, wantCalls: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var page map[string]any
			require.NoError(t, json.Unmarshal(ct.Load(t, fixturePage1).Body, &page))
			tt.mutate(page)
			body, err := json.Marshal(page)
			require.NoError(t, err)
			f := ct.Replay(t, ct.Any(answer(200, body)))

			_, err = newPoller(t, f, nil).Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			assert.Len(t, f.Requests(), tt.wantCalls)
		})
	}
}

func TestCursor(t *testing.T) {
	empty := []byte(`{"ok":true,"messages":[],"has_more":false}`)
	tests := []struct {
		name       string
		body       []byte
		cursor     string
		wantOldest string
		wantCursor string
	}{
		{name: "no messages keeps the cursor", body: empty, cursor: "1512104434.000490",
			wantOldest: "1512104434.000490", wantCursor: "1512104434.000490"},
		{name: "an unreadable cursor is dropped", body: ct.Load(t, fixturePage1).Body, cursor: "yesterday",
			wantOldest: "", wantCursor: "1512104434.000490"},
		{name: "older messages never move it back", body: ct.Load(t, fixturePage1).Body, cursor: "1600000000.000000",
			wantOldest: "1600000000.000000", wantCursor: "1600000000.000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ct.Replay(t, ct.Any(answer(200, tt.body)))
			res, err := newPoller(t, f, map[string]any{"max_pages": 1}).Poll(t.Context(), connector.State{Cursor: tt.cursor})
			require.NoError(t, err)
			assert.Equal(t, tt.wantOldest, f.Requests()[0].URL.Query().Get("oldest"))
			assert.Equal(t, tt.wantCursor, res.State.Cursor)
		})
	}
}

func TestTSAfter(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"1512104434.000490", "1512085950.000216", true},
		{"1512085950.000216", "1512104434.000490", false},
		{"1512085950.218404", "1512085950.000216", true},
		{"1512085950.000216", "1512085950.000216", false},
		{"10000000000.000001", "9999999999.999999", true}, // more digits of seconds
		{"1512085950.1", "1512085950.099999", true},       // short fraction
		{"1512085950.10", "1512085950.1", false},          // same instant, written longer
		// float64 cannot tell these apart
		{"1712085950.000002", "1712085950.000001", true},
	}
	for _, tt := range tests {
		t.Run(tt.a+" after "+tt.b, func(t *testing.T) {
			assert.Equal(t, tt.want, tsAfter(tt.a, tt.b))
		})
	}
}

func TestMessages(t *testing.T) {
	long := strings.Repeat("é", maxTextRunes+10)
	tests := []struct {
		name        string
		message     map[string]any
		config      map[string]any
		wantVersion string
		want        map[string]any
	}{
		{
			name: "edited message is versioned by edited.ts",
			message: map[string]any{"type": "message", "user": "U1", "text": "fixed typo", "ts": "1700000000.000100",
				"edited": map[string]any{"user": "U1", "ts": "1700000100.000000"}},
			wantVersion: "1700000100.000000",
			want: map[string]any{"ts": "1700000000.000100", "user": "U1", "text": "fixed typo", "type": "message",
				"edited_ts": "1700000100.000000", "channel": testChannel},
		},
		{
			name: "bot message in a thread",
			message: map[string]any{"type": "message", "subtype": "bot_message", "bot_id": "B1", "text": "deploy done",
				"ts": "1700000000.000200", "thread_ts": "1700000000.000200", "reply_count": 3},
			wantVersion: "1700000000.000200",
			want: map[string]any{"ts": "1700000000.000200", "bot_id": "B1", "text": "deploy done", "type": "message",
				"subtype": "bot_message", "thread_ts": "1700000000.000200", "reply_count": float64(3), "channel": testChannel},
		},
		{
			name:        "long text is cut at 4000 characters",
			message:     map[string]any{"type": "message", "user": "U1", "text": long, "ts": "1700000000.000300"},
			wantVersion: "1700000000.000300",
			want: map[string]any{"ts": "1700000000.000300", "user": "U1", "type": "message", "channel": testChannel,
				"text": strings.Repeat("é", maxTextRunes), "text_truncated": true},
		},
		{
			name:        "permalink with workspace_url",
			message:     map[string]any{"type": "message", "user": "U1", "text": "hi", "ts": "1512085950.000216"},
			config:      map[string]any{"workspace_url": "https://acme.slack.com/"},
			wantVersion: "1512085950.000216",
			want: map[string]any{"ts": "1512085950.000216", "user": "U1", "type": "message", "text": "hi", "channel": testChannel,
				"url": "https://acme.slack.com/archives/C0123ABCD/p1512085950000216"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := json.Marshal(map[string]any{"ok": true, "messages": []any{tt.message}})
			require.NoError(t, err)
			f := ct.Replay(t, ct.Any(answer(200, body)))
			res, err := newPoller(t, f, tt.config).Poll(t.Context(), connector.State{})
			require.NoError(t, err)
			require.Len(t, res.Items, 1)
			assert.Equal(t, tt.wantVersion, res.Items[0].Version)
			assert.Equal(t, tt.want, decodeMessage(t, res.Items[0]))
		})
	}
}

func TestBadMessages(t *testing.T) {
	good := map[string]any{"type": "message", "user": "U1", "text": "ok", "ts": "1700000000.000100"}
	tests := []struct {
		name       string
		message    any
		wantFailed string
		wantErr    string
	}{
		{name: "no ts", message: map[string]any{"type": "message", "text": "?"}, wantFailed: "messages[1]", wantErr: "message has no ts"},
		{name: "not an object", message: 42, wantFailed: "messages[1]", wantErr: "not a Slack message"},
		{name: "ts that is not a timestamp", message: map[string]any{"ts": "now"}, wantFailed: "now", wantErr: `ts "now" is not a Slack timestamp`},
		{name: "field of the wrong type keeps the ts", message: map[string]any{"ts": "1700000000.000200", "text": []int{1}},
			wantFailed: "1700000000.000200", wantErr: "not a Slack message: json: cannot unmarshal array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := json.Marshal(map[string]any{"ok": true, "messages": []any{good, tt.message}})
			require.NoError(t, err)
			f := ct.Replay(t, ct.Any(answer(200, body)))
			res, err := newPoller(t, f, nil).Poll(t.Context(), connector.State{})
			require.NoError(t, err, "one bad message never fails the poll")
			assert.Equal(t, []string{"1700000000.000100"}, ct.ItemIDs(res.Items))
			require.Len(t, res.Failed, 1)
			assert.Equal(t, tt.wantFailed, res.Failed[0].ID)
			assert.ErrorContains(t, res.Failed[0].Err, tt.wantErr)
			assert.Equal(t, "1700000000.000100", res.State.Cursor)
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		wantErr  string
		wantCode string // Slack's error code, when ok=false
	}{
		{name: "channel_not_found (fixture)", status: 200, body: string(ct.Load(t, fixtureError).Body),
			wantErr:  "slack: conversations.history answered ok=false: channel_not_found (check config.channel, and that the token's app or user can see the channel)",
			wantCode: "channel_not_found"},
		{name: "invalid_auth", status: 200, body: `{"ok":false,"error":"invalid_auth"}`,
			wantErr: "slack: conversations.history answered ok=false: invalid_auth (check config.token)", wantCode: "invalid_auth"},
		{name: "missing_scope names the scope", status: 200,
			body:    `{"ok":false,"error":"missing_scope","needed":"groups:history","provided":"channels:read"}`,
			wantErr: "slack: conversations.history answered ok=false: missing_scope (the token needs the groups:history scope)", wantCode: "missing_scope"},
		{name: "not_in_channel", status: 200, body: `{"ok":false,"error":"not_in_channel"}`,
			wantErr: "slack: conversations.history answered ok=false: not_in_channel (invite the app to the channel)", wantCode: "not_in_channel"},
		{name: "ok false without a code", status: 200, body: `{"ok":false}`,
			wantErr: "slack: conversations.history answered ok=false: (no error code)", wantCode: ""},
		{name: "429", status: 429, body: ``, wantErr: "slack: upstream answered 429 Too Many Requests"},
		{name: "500 with a body", status: 500, body: "oops\nsomething", wantErr: "slack: upstream answered 500 Internal Server Error: oops something"},
		{name: "200 that is not JSON", status: 200, body: "<html>",
			wantErr: `slack: response is not the JSON expected: invalid character '<' looking for beginning of value (starts "<html>")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ct.Replay(t, ct.Any(answer(tt.status, []byte(tt.body))))
			res, err := newPoller(t, f, nil).Poll(t.Context(), connector.State{Cursor: "1512085950.000216"})
			require.Error(t, err)
			assert.Equal(t, connector.Result{}, res, "a failed poll returns nothing, so no cursor moves")
			assert.EqualError(t, err, tt.wantErr)
			assert.NotContains(t, err.Error(), testToken)
			apiErr, isAPI := errors.AsType[*APIError](err)
			if strings.Contains(tt.wantErr, "ok=false") {
				require.True(t, isAPI)
				assert.Equal(t, tt.wantCode, apiErr.Code)
			} else {
				assert.False(t, isAPI)
			}
		})
	}
}

func TestCancelAbortsThePoll(t *testing.T) {
	srv := ct.Hang(t, nil)
	err := srv.CancelPoll(t, newPoller(t, srv.Server, nil))
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.True(t, strings.HasPrefix(err.Error(), "slack: "), err.Error())
}

func TestNilHTTPClientFallsBack(t *testing.T) {
	f := ct.Replay(t, ct.Any(answer(200, ct.Load(t, fixturePage1).Body)))
	raw := []byte(`{"base_url":"` + f.URL + `","token":"xoxb-1","channel":"C0123ABCD","max_pages":1,"allow_hosts":["127.0.0.1"]}`)
	c, err := New(raw, connector.Deps{})
	require.NoError(t, err)
	res, err := c.Poll(t.Context(), connector.State{})
	require.NoError(t, err)
	assert.Len(t, res.Items, 2)
	assert.Contains(t, f.Requests()[0].Header.Get("User-Agent"), "pollgrid/")
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		wantErr []string
		// for a valid config
		wantURL              string
		wantLimit, wantPages int
	}{
		{name: "defaults", raw: `{"token":"xoxb-s3cret","channel":"C0123ABCD"}`,
			wantURL: "https://slack.com/api/conversations.history", wantLimit: 200, wantPages: 5},
		{name: "private channel, base_url and limits", raw: `{"token":"xoxb-s3cret","channel":"G0123ABCDEF","base_url":"http://proxy.example/slack/api/","limit":999,"max_pages":100}`,
			wantURL: "http://proxy.example/slack/api/conversations.history", wantLimit: 999, wantPages: 100},

		{name: "empty config", raw: ``, wantErr: []string{
			`config.token: required: write "${SLACK_TOKEN}" and set that variable to a bot token (xoxb-...) with channels:history`,
			`config.channel: required: the channel id, e.g. "C0123ABCD"`,
		}},
		{name: "channel name instead of id", raw: `{"token":"xoxb-s3cret","channel":"#general"}`,
			wantErr: []string{`config.channel: "#general" is not a channel id (write the id such as "C0123ABCD", not the #name`}},
		{name: "lowercase channel id", raw: `{"token":"xoxb-s3cret","channel":"c0123abcd"}`,
			wantErr: []string{`config.channel: "c0123abcd" is not a channel id`}},
		{name: "token with a newline is not echoed", raw: `{"token":"xoxb-s3cret\n","channel":"C0123ABCD"}`,
			wantErr: []string{"config.token: contains whitespace or control characters"}},
		{name: "bad base_url is redacted", raw: `{"token":"xoxb-s3cret","channel":"C0123ABCD","base_url":"slack.com:s3cret@x"}`,
			wantErr: []string{`config.base_url: "(URL not shown: it contains an @ that may hide a password)" is not an absolute http(s) URL`}},
		{name: "workspace_url relative", raw: `{"token":"xoxb-s3cret","channel":"C0123ABCD","workspace_url":"acme.slack.com"}`,
			wantErr: []string{`config.workspace_url: "acme.slack.com" is not an absolute http(s) URL (write e.g. "https://acme.slack.com")`}},
		{name: "limit out of range", raw: `{"token":"xoxb-s3cret","channel":"C0123ABCD","limit":1000}`,
			wantErr: []string{"config.limit: 1000 is out of range (write a number from 1 to 999; default 200)"}},
		{name: "max_pages out of range", raw: `{"token":"xoxb-s3cret","channel":"C0123ABCD","max_pages":0}`,
			wantErr: []string{"config.max_pages: 0 is out of range (write a number from 1 to 100; default 5)"}},
		{name: "unknown field", raw: `{"token":"xoxb-s3cret","channel":"C0123ABCD","channel_name":"general"}`,
			wantErr: []string{`config.channel_name: unknown field (known: token, channel, base_url, workspace_url, limit, max_pages, allow_hosts)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.wantErr) > 0 {
				err := ct.ConfigError(t, New, tt.raw, tt.wantErr...)
				assert.NotContains(t, err.Error(), "s3cret", "no secret in config errors")
				return
			}
			c, err := New(json.RawMessage(tt.raw), connector.Deps{})
			require.NoError(t, err)
			p := c.(*historyPoller)
			assert.Equal(t, tt.wantURL, p.historyURL)
			assert.Equal(t, tt.wantLimit, p.limit)
			assert.Equal(t, tt.wantPages, p.maxPages)
		})
	}
}
