package connectortest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordingT is a testing.TB whose failures are recorded instead of failing
// the real test, to show that a check fails. Everything else (Cleanup,
// TempDir, Context, Output) is the real test's. Run code using it with
// runWith: Fatal and FailNow end the goroutine.
type recordingT struct {
	testing.TB
	mu       sync.Mutex
	failures []string
}

func (r *recordingT) Helper() {}

func (r *recordingT) Errorf(format string, args ...any) { r.record(fmt.Sprintf(format, args...)) }
func (r *recordingT) Error(args ...any)                 { r.record(fmt.Sprint(args...)) }
func (r *recordingT) Fail()                             { r.record("Fail called") }
func (r *recordingT) FailNow()                          { r.record("FailNow called"); runtime.Goexit() }
func (r *recordingT) Fatalf(format string, args ...any) {
	r.record(fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (r *recordingT) Fatal(args ...any) { r.record(fmt.Sprint(args...)); runtime.Goexit() }

func (r *recordingT) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.failures) > 0
}

func (r *recordingT) record(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, msg)
}

func (r *recordingT) messages() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.failures, "\n")
}

// runWith runs f with a recordingT on its own goroutine, so that a Fatal in
// f ends only f, and returns the recorder.
func runWith(t *testing.T, f func(t testing.TB)) *recordingT {
	t.Helper()
	rec := &recordingT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(rec)
	}()
	<-done
	return rec
}

func get(t *testing.T, srv *Server, method, target, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+target, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("X-Test", "yes")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestLoad(t *testing.T) {
	pointBody, err := os.ReadFile("testdata/alerts_active_point_2024.json")
	require.NoError(t, err)
	issuesBody, err := os.ReadFile("testdata/list_issues_page1.json")
	require.NoError(t, err)
	nwsBody, err := os.ReadFile("testdata/alerts_active_point_45.458_-122.6636_2019.json")
	require.NoError(t, err)

	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantBody   []byte
		wantHeader map[string][]string // nil value: absent
	}{
		{
			name: "body without a headers file: nothing guessed from the extension", path: "alerts_active_point_2024.json",
			wantBody:   pointBody,
			wantHeader: map[string][]string{"Content-Type": nil},
		},
		{
			name: "NWS's recorded headers", path: "alerts_active_point_45.458_-122.6636_2019.json",
			wantStatus: 200, wantBody: nwsBody,
			wantHeader: map[string][]string{
				"Content-Type":   {"application/geo+json"},
				"Last-Modified":  {"Wed, 28 Aug 2019 17:36:22 GMT"},
				"Cache-Control":  {"public, max-age=30, s-maxage=30"},
				"Content-Length": nil,
			},
		},
		{
			name: "path relative to the package", path: "./testdata/alerts_active_point_2024.json",
			wantBody: pointBody,
		},
		{
			name: "body with recorded status and headers", path: "list_issues_page1.json",
			wantStatus: 200, wantBody: issuesBody,
			wantHeader: map[string][]string{
				"Etag":           {`"33b993150c346057e2d21c5333d4bc506287037296cc0ec3f450bafe9b4bdc72"`},
				"Content-Type":   {"application/json; charset=utf-8"},
				"Vary":           {"Accept, Authorization, Cookie, X-GitHub-OTP", "Accept-Encoding, Accept, X-Requested-With"},
				"Content-Length": nil,
				"Connection":     nil,
			},
		},
		{
			name: "a headers file alone is a bodiless answer", path: "conditional_get_304_not_modified.headers.json",
			wantStatus: 304,
			wantHeader: map[string][]string{
				"Etag":         {`"8600bedcb7fed1d8065e1693e05529ce"`},
				"Status":       nil,
				"Content-Type": nil,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := Load(t, tt.path)
			assert.Equal(t, tt.wantStatus, resp.Status)
			assert.Equal(t, tt.wantBody, resp.Body)
			for name, want := range tt.wantHeader {
				assert.Equal(t, want, resp.Header.Values(name), name)
			}
		})
	}
}

func TestLoadFailsTheTest(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(dir+"/bad.json", []byte(`{}`), 0o600))
	require.NoError(t, os.WriteFile(dir+"/bad.headers.json", []byte(`{"status": 200, "headers": [["ETag"]]}`), 0o600))
	tests := []struct{ name, path, want string }{
		{"missing file", "no_such_file.json", "no_such_file.json"},
		{"malformed headers", dir + "/bad.json", "headers[0] has 1 elements"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := runWith(t, func(t testing.TB) { Load(t, tt.path) })
			assert.Contains(t, rec.messages(), tt.want)
		})
	}
}

func TestReplayMatchesRoutesAndRecords(t *testing.T) {
	text := func(s string) Response { return Response{Body: []byte(s)} }
	srv := Replay(t,
		GET("/items?page=2", text("page 2")),
		GET("/items", text("first"), text("second")),
		Route{Method: http.MethodPost, Path: "/items", Responses: []Response{{Status: http.StatusCreated, Body: []byte("posted")}}},
		Route{Method: "*", Path: "*", Handler: func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "handled "+r.Method+" "+r.URL.Path)
		}},
	)
	tests := []struct {
		method, target, body string
		wantStatus           int
		wantBody             string
	}{
		{"GET", "/items", "", 200, "first"},
		{"GET", "/items?other=1", "", 200, "second"},
		{"GET", "/items", "", 200, "second"}, // the last answer repeats
		{"GET", "/items?page=2&per_page=5", "", 200, "page 2"},
		{"GET", "/items?page=3", "", 200, "second"},
		{"POST", "/items", `{"a":1}`, 201, "posted"},
		{"DELETE", "/elsewhere", "", 200, "handled DELETE /elsewhere"},
	}
	for _, tt := range tests {
		resp, body := get(t, srv, tt.method, tt.target, tt.body)
		assert.Equal(t, tt.wantStatus, resp.StatusCode, "%s %s", tt.method, tt.target)
		assert.Equal(t, tt.wantBody, body, "%s %s", tt.method, tt.target)
	}

	reqs := srv.Requests()
	require.Len(t, reqs, len(tests))
	for i, tt := range tests {
		assert.Equal(t, tt.method, reqs[i].Method)
		assert.Equal(t, tt.target, reqs[i].URL.RequestURI())
		assert.Equal(t, tt.body, string(reqs[i].Body))
		assert.Equal(t, "yes", reqs[i].Header.Get("X-Test"))
	}
}

func TestReplayUnmatchedRequestFailsTheTest(t *testing.T) {
	var status int
	var body string
	rec := runWith(t, func(rt testing.TB) {
		srv := Replay(rt, GET("/alerts/active?area=WA", Response{}))
		resp, b := get(t, srv, "GET", "/alerts/active?area=CA", "")
		status, body = resp.StatusCode, b
	})
	assert.Equal(t, http.StatusNotImplemented, status)
	assert.Contains(t, body, "no route for GET /alerts/active?area=CA")
	assert.Contains(t, rec.messages(), "no route for GET /alerts/active?area=CA\nroutes:\n  GET /alerts/active?area=WA")
}

func TestReplayRewritesOrigins(t *testing.T) {
	page := Load(t, "list_issues_page1.json")
	escaped := Response{Body: []byte(`{"next":"https:\/\/api.github.com\/repositories\/1?page=2"}`)}
	srv := Replay(t, GET("/issues", page), GET("/escaped", escaped))
	srv.Rewrite("https://api.github.com/")

	resp, body := get(t, srv, "GET", "/issues", "")
	assert.Equal(t, "<"+srv.URL+`/repositories/515435940/issues?per_page=3&page=2>; rel="next", <`+
		srv.URL+`/repositories/515435940/issues?per_page=3&page=5>; rel="last"`, resp.Header.Get("Link"))
	assert.NotContains(t, body, "https://api.github.com")
	assert.Contains(t, body, `"url": "`+srv.URL+"/repos/octokit-fixture-org/")

	_, body = get(t, srv, "GET", "/escaped", "")
	assert.Equal(t, `{"next":"`+strings.ReplaceAll(srv.URL, "/", `\/`)+`\/repositories\/1?page=2"}`, body)
}

func TestReplaySetAndEmptyAnswers(t *testing.T) {
	srv := Replay(t, Any(Response{Body: []byte("old")}))
	_, body := get(t, srv, "GET", "/x", "")
	require.Equal(t, "old", body)

	srv.Set(Any(Response{}), GET("/never", Response{}))
	resp, body := get(t, srv, "GET", "/x", "")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, body)
	assert.Empty(t, resp.Header.Get("Content-Type"), "an empty answer has no sniffed Content-Type")

	srv.Set(Any(Response{Status: http.StatusNotModified, Body: []byte("ignored")}))
	resp, body = get(t, srv, "GET", "/x", "")
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	assert.Empty(t, body)
}

func TestServeLetsTheHandlerReadTheRecordedBody(t *testing.T) {
	srv := Serve(t, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		assert.NoError(t, err)
		JSON(http.StatusCreated, append([]byte("echo "), body...)).ServeHTTP(w, r)
	})
	resp, body := get(t, srv, "POST", "/anything?x=1", `{"a":1}`)
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, `echo {"a":1}`, body)
	reqs := srv.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "/anything?x=1", reqs[0].URL.RequestURI())
	assert.Equal(t, `{"a":1}`, string(reqs[0].Body))
}

func TestResponseCopies(t *testing.T) {
	page := Load(t, "list_issues_page1.json")
	link := page.Header.Get("Link")
	require.NotEmpty(t, link)

	changed := page.WithHeader("Link", "<x>").WithHeader("X-New", "1").WithBody([]byte("[]"))
	assert.Equal(t, "<x>", changed.Header.Get("Link"))
	assert.Equal(t, "1", changed.Header.Get("X-New"))
	assert.Equal(t, "[]", string(changed.Body))
	assert.Empty(t, page.WithoutHeader("Link").Header.Values("Link"))
	assert.Equal(t, link, page.Header.Get("Link"), "the original keeps its headers")
	assert.Empty(t, page.Header.Get("X-New"))
	assert.NotEqual(t, "[]", string(page.Body))
	assert.Equal(t, "v", Response{}.WithHeader("K", "v").Header.Get("K"), "a response without headers gets some")
}

func TestRewriteHeadersLeavesBodies(t *testing.T) {
	srv := Replay(t, GET("/issues", Load(t, "list_issues_page1.json")))
	srv.RewriteHeaders("https://api.github.com")

	resp, body := get(t, srv, "GET", "/issues", "")
	assert.Equal(t, "<"+srv.URL+`/repositories/515435940/issues?per_page=3&page=2>; rel="next", <`+
		srv.URL+`/repositories/515435940/issues?per_page=3&page=5>; rel="last"`, resp.Header.Get("Link"))
	assert.Contains(t, body, `"url": "https://api.github.com/repos/octokit-fixture-org/`, "bodies are sent as recorded")
}

func TestClose(t *testing.T) {
	srv := Replay(t)
	srv.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	_, err = http.DefaultClient.Do(req)
	assert.Error(t, err, "nothing answers at a closed server's URL")
}

// TestReplayServesWhatWasRecorded: a connector meets the recorded
// Content-Type, and none at all where none was recorded (no sniffing).
func TestReplayServesWhatWasRecorded(t *testing.T) {
	srv := Replay(t,
		GET("/alerts/active", Load(t, "alerts_active_point_45.458_-122.6636_2019.json")),
		GET("/unrecorded", Load(t, "alerts_active_point_2024.json")))

	resp, body := get(t, srv, "GET", "/alerts/active?point=45.458,-122.6636", "")
	assert.Equal(t, "application/geo+json", resp.Header.Get("Content-Type"))
	assert.Equal(t, "Wed, 28 Aug 2019 17:36:22 GMT", resp.Header.Get("Last-Modified"))
	assert.Equal(t, "Accept,Feature-Flags", resp.Header.Get("Vary"))
	assert.Len(t, body, 6553, "the recorded content-length")

	resp, _ = get(t, srv, "GET", "/unrecorded", "")
	assert.Empty(t, resp.Header.Values("Content-Type"), "not application/json from the extension, nor a sniffed text/plain")
}

func TestRecorder(t *testing.T) {
	const rss = `<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><guid>a</guid></item></channel></rss>`
	upstreamSrv := Serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/rss+xml; charset=utf-8")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Add("Vary", "Accept")
		w.Header().Add("Vary", "Accept-Encoding")
		_, _ = io.WriteString(w, rss)
	})
	dir := t.TempDir()
	client := &http.Client{Transport: &Recorder{Dir: dir, Next: upstreamSrv.Client().Transport}}

	resp, err := client.Get(upstreamSrv.URL + "/feeds/news.rss?token=SECRET")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, rss, string(body), "the caller still reads the body")

	req, err := http.NewRequest(http.MethodGet, upstreamSrv.URL+"/feeds/news.rss", nil)
	require.NoError(t, err)
	req.Header.Set("If-None-Match", `"v1"`)
	resp, err = client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"feeds_news.rss.xml", "feeds_news.rss.headers.json", "feeds_news.rss_2.headers.json"}, names)
	headersFile, err := os.ReadFile(dir + "/feeds_news.rss.headers.json")
	require.NoError(t, err)
	assert.Contains(t, string(headersFile), `"url": "`+upstreamSrv.URL+`/feeds/news.rss?token=xxxxx"`)
	assert.NotContains(t, string(headersFile), "SECRET")

	// Replayed, the recording answers as the upstream did.
	replayed := Replay(t, GET("/feeds/news.rss", Load(t, dir+"/feeds_news.rss.xml")))
	resp, got := get(t, replayed, "GET", "/feeds/news.rss", "")
	assert.Equal(t, "application/rss+xml; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Equal(t, `"v1"`, resp.Header.Get("ETag"))
	assert.Equal(t, []string{"Accept", "Accept-Encoding"}, resp.Header.Values("Vary"))
	assert.Equal(t, rss, got)
	notModified := Load(t, dir+"/feeds_news.rss_2.headers.json")
	assert.Equal(t, http.StatusNotModified, notModified.Status)
}
