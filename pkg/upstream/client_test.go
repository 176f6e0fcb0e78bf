package upstream

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/egress"
)

// get sends a GET through c and returns the response; the body is closed when
// the test ends.
func get(t *testing.T, ctx context.Context, c *http.Client, url string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// local is NewClient for the httptest upstreams of these tests, which run
// on loopback: the outbound guard lets 127.0.0.1 through only when told.
func local(o Options) *http.Client {
	o.Allow = o.Allow.Merge(egress.Loopback())
	return NewClient(o)
}

// trust makes c's base transport trust the TLS test server ts, keeping the
// client's own redirect policy, User-Agent and body cap.
func trust(t *testing.T, c *http.Client, ts *httptest.Server) {
	t.Helper()
	r, ok := c.Transport.(*root)
	require.True(t, ok, "NewClient's transport is %T", c.Transport)
	tr, ok := r.RoundTripper.(*transport)
	require.True(t, ok, "the transport under root is %T", r.RoundTripper)
	base, ok := tr.base.(*http.Transport)
	require.True(t, ok, "base transport is %T", tr.base)
	base.TLSClientConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
}

func TestUserAgent(t *testing.T) {
	var mu sync.Mutex
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Get("User-Agent")
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)

	tests := []struct {
		name   string
		opts   Options
		header string
		want   string
	}{
		{name: "default names pollgrid", want: "pollgrid/" + Version + " (+https://github.com/pollgrid/pollgrid)"},
		{name: "the process's own default", opts: Options{UserAgent: "pollgrid-ops/1 (ops@example.com)"}, want: "pollgrid-ops/1 (ops@example.com)"},
		{name: "a connector's own is kept", header: "(pollgrid, ops@example.com)", want: "(pollgrid, ops@example.com)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.header != "" {
				h.Set("User-Agent", tt.header)
			}
			get(t, t.Context(), local(tt.opts), srv.URL, h)
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestRedirects(t *testing.T) {
	// /hop/N redirects to /hop/N-1 until /hop/0 answers 200.
	chain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
		if err != nil {
			http.Error(w, "bad path", http.StatusBadRequest)
			return
		}
		if n == 0 {
			_, _ = io.WriteString(w, "arrived")
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
	}))
	t.Cleanup(srv(chain))

	t.Run("up to MaxRedirects are followed", func(t *testing.T) {
		c := local(Options{MaxRedirects: 3})
		resp := get(t, t.Context(), c, chain.URL+"/hop/3", nil)
		body, err := ReadBody(resp)
		require.NoError(t, err)
		assert.Equal(t, "arrived", string(body))
	})
	t.Run("default follows 5", func(t *testing.T) {
		resp := get(t, t.Context(), local(Options{}), chain.URL+"/hop/5", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	})
	t.Run("one more than MaxRedirects fails", func(t *testing.T) {
		c := local(Options{MaxRedirects: 3})
		_, err := c.Get(chain.URL + "/hop/4")
		require.Error(t, err)
		assert.ErrorContains(t, err, "stopped after 3 redirects")
	})

	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if to := r.URL.Query().Get("to"); to != "" {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, "plain")
	}))
	t.Cleanup(srv(plain))
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if to := r.URL.Query().Get("to"); to != "" {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, "secure")
	}))
	t.Cleanup(srv(secure))

	tests := []struct {
		name    string
		url     string
		want    string
		wantErr string
	}{
		{name: "https to https", url: secure.URL + "/?to=" + secure.URL + "/", want: "secure"},
		{name: "http to https", url: plain.URL + "/?to=" + secure.URL + "/", want: "secure"},
		{name: "https to http refused", url: secure.URL + "/?to=" + plain.URL + "/", wantErr: "refusing a redirect from https to http"},
		{
			name:    "http to https to http refused",
			url:     plain.URL + "/?to=" + urlQueryEscape(secure.URL+"/?to="+plain.URL+"/"),
			wantErr: "refusing a redirect from https to http",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := local(Options{})
			trust(t, c, secure)
			resp, err := c.Get(tt.url)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := ReadBody(resp)
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(body))
		})
	}
}

func srv(s *httptest.Server) func() { return s.Close }

func urlQueryEscape(s string) string {
	r := strings.NewReplacer("%", "%25", "&", "%26", "?", "%3F", "=", "%3D", ":", "%3A", "/", "%2F")
	return r.Replace(s)
}

func TestBodyCap(t *testing.T) {
	const limit = 100
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		_, _ = w.Write(bytes.Repeat([]byte("a"), n))
	}))
	t.Cleanup(srv.Close)
	c := local(Options{MaxBodyBytes: limit})

	tests := []struct {
		name    string
		n       int
		tooBig  bool
		wantLen int
	}{
		{name: "under the cap", n: limit - 1, wantLen: limit - 1},
		{name: "exactly the cap", n: limit, wantLen: limit},
		{name: "one byte over", n: limit + 1, tooBig: true},
		{name: "far over", n: 1 << 20, tooBig: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := get(t, t.Context(), c, fmt.Sprintf("%s/?n=%d", srv.URL, tt.n), nil)
			body, err := ReadBody(resp)
			if tt.tooBig {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrBodyTooLarge)
				assert.ErrorContains(t, err, "more than 100 bytes")
				return
			}
			require.NoError(t, err)
			assert.Len(t, body, tt.wantLen)
		})
	}

	t.Run("ReadJSON too", func(t *testing.T) {
		resp := get(t, t.Context(), c, fmt.Sprintf("%s/?n=%d", srv.URL, 2*limit), nil)
		var v any
		assert.ErrorIs(t, ReadJSON(resp, &v), ErrBodyTooLarge)
	})
}

// gzipZeros builds a gzip body of n bytes of zeros (n a multiple of 1 MiB)
// without holding them in memory: one member of 1 MiB compressed once, then
// repeated, as gzip allows (a reader reads concatenated members as one).
func gzipZeros(t testing.TB, n int) []byte {
	t.Helper()
	const chunk = 1 << 20
	var member bytes.Buffer
	zw, err := gzip.NewWriterLevel(&member, gzip.BestCompression)
	require.NoError(t, err)
	_, err = zw.Write(make([]byte, chunk))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return bytes.Repeat(member.Bytes(), n/chunk)
}

func TestGzipBomb(t *testing.T) {
	const uncompressed = 64 << 20
	const limit = 1 << 20
	bomb := gzipZeros(t, uncompressed)
	require.Less(t, len(bomb), 256<<10, "the bomb should compress well")
	zr, err := gzip.NewReader(bytes.NewReader(bomb))
	require.NoError(t, err)
	n, err := io.Copy(io.Discard, zr)
	require.NoError(t, err)
	require.EqualValues(t, uncompressed, n, "the bomb should inflate to its full size")

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(bomb)
	}))
	t.Cleanup(srv.Close)
	c := local(Options{MaxBodyBytes: limit})

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resp := get(t, t.Context(), c, srv.URL, nil)
	body, err := ReadBody(resp)
	runtime.ReadMemStats(&after)

	require.Error(t, err)
	assert.ErrorIs(t, err, ErrBodyTooLarge)
	assert.Nil(t, body)
	assert.True(t, resp.Uncompressed, "the transport should have decompressed the body")
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d KiB reading a %d MiB gzip bomb (%d KiB on the wire)", allocated>>10, uncompressed>>20, len(bomb)>>10)
	assert.Less(t, allocated, uint64(16<<20), "reading the bomb allocated %d bytes", allocated)
}

func TestSlowBody(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = io.WriteString(w, `{"items":[`)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	started := time.Now()
	resp := get(t, ctx, local(Options{}), srv.URL, nil)
	var v any
	err := ReadJSON(resp, &v)
	elapsed := time.Since(started)

	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	// The server never finishes: only the deadline can end the read.
	assert.Less(t, elapsed, 10*time.Second)
}

func TestConditional(t *testing.T) {
	const etag = `"v42"`
	const lastModified = "Tue, 03 Jun 2025 10:00:00 GMT"
	type seen struct{ ifNoneMatch, ifModifiedSince string }
	var mu sync.Mutex
	var requests []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, seen{r.Header.Get("If-None-Match"), r.Header.Get("If-Modified-Since")})
		mu.Unlock()
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			// RFC 9110 requires the ETag on a 304, not the Last-Modified.
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Last-Modified", lastModified)
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)
	c := local(Options{})

	poll := func(state connector.State) (*http.Response, connector.State) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		Conditional(req, state)
		resp, err := c.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { _ = resp.Body.Close() })
		require.NoError(t, CheckStatus(resp))
		return resp, Validators(resp, state)
	}

	resp, state := poll(connector.State{Cursor: "c1"})
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, connector.State{Cursor: "c1", ETag: etag, LastModified: lastModified}, state)

	resp, state = poll(state)
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	assert.Equal(t, connector.State{Cursor: "c1", ETag: etag, LastModified: lastModified}, state,
		"a 304 without Last-Modified keeps the stored one")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, requests, 2)
	assert.Equal(t, seen{}, requests[0], "the first poll has no validators to send")
	assert.Equal(t, seen{etag, lastModified}, requests[1])
}

func TestValidatorsOn200WithoutThem(t *testing.T) {
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}}
	got := Validators(resp, connector.State{Cursor: "c", ETag: `"old"`, LastModified: "old"})
	assert.Equal(t, connector.State{Cursor: "c"}, got, "a 200 without validators drops the old ones")
}

func TestCheckStatus(t *testing.T) {
	long := strings.Repeat("word ", 200)
	tests := []struct {
		name    string
		status  int
		body    string
		wantNil bool
		want    string
	}{
		{name: "200", status: http.StatusOK, body: "fine", wantNil: true},
		{name: "204", status: http.StatusNoContent, wantNil: true},
		{name: "304", status: http.StatusNotModified, wantNil: true},
		{name: "404 with a JSON problem", status: http.StatusNotFound, body: "{\n  \"title\": \"Not Found\",\n  \"detail\": \"no such zone\"\n}\n",
			want: `upstream answered 404 Not Found: { "title": "Not Found", "detail": "no such zone" }`},
		{name: "500 without a body", status: http.StatusInternalServerError, want: "upstream answered 500 Internal Server Error"},
		{name: "long body is cut", status: http.StatusBadGateway, body: long,
			want: "upstream answered 502 Bad Gateway: " + strings.TrimSpace(long)[:300] + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			resp := get(t, t.Context(), local(Options{}), srv.URL, nil)
			err := CheckStatus(resp)
			if tt.wantNil {
				assert.NoError(t, err)
				return
			}
			var se *StatusError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tt.status, se.StatusCode)
			assert.Equal(t, tt.want, err.Error())
			assert.NotContains(t, se.Snippet, "\n")
			assert.LessOrEqual(t, len([]rune(se.Snippet)), 303)
		})
	}
}

func TestCheckStatusMultibyteSnippet(t *testing.T) {
	// 299 ASCII bytes then two-byte runes: a cut at byte 300 would split one.
	body := strings.Repeat("x", 299) + strings.Repeat("é", 100)
	resp := &http.Response{StatusCode: 500, Status: "500 Internal Server Error", Body: io.NopCloser(strings.NewReader(body))}
	var se *StatusError
	require.ErrorAs(t, CheckStatus(resp), &se)
	assert.True(t, utf8.ValidString(se.Snippet), "snippet %q is not valid UTF-8", se.Snippet[290:])
	assert.Equal(t, strings.Repeat("x", 299)+"é...", se.Snippet)

	// A status set by hand (no Status text) still reads well.
	resp = &http.Response{StatusCode: 418, Body: io.NopCloser(strings.NewReader(""))}
	assert.EqualError(t, CheckStatus(resp), "upstream answered 418 I'm a teapot")
}

func TestDecodeJSON(t *testing.T) {
	deep := func(n int) []byte {
		return []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
	}
	tests := []struct {
		name    string
		body    []byte
		wantErr string
	}{
		{name: "object", body: []byte(`{"a":[1,{"b":"c"}]}`)},
		{name: "invalid UTF-8", body: []byte("{\"a\":\"\xff\xfe\"}"), wantErr: "response is not valid UTF-8"},
		{name: "nested 10000 deep", body: deep(10000), wantErr: "response JSON nests deeper than 256 levels"},
		{name: "nested exactly the max", body: deep(MaxJSONDepth)},
		{name: "nested one past the max", body: deep(MaxJSONDepth + 1), wantErr: "nests deeper"},
		{name: "brackets in strings are not nesting", body: []byte(`{"a":"` + strings.Repeat("[{", 5000) + `"}`)},
		{name: "escaped quotes keep the string open", body: []byte(`{"a":"\"` + strings.Repeat("[", 5000) + `\\"}`)},
		{name: "objects nest too", body: []byte(strings.Repeat(`{"a":`, 300) + "1" + strings.Repeat("}", 300)), wantErr: "nests deeper"},
		{name: "not JSON", body: []byte("<html>Service Unavailable</html>"), wantErr: `response is not the JSON expected: invalid character '<' looking for beginning of value (starts "<html>Service Unavailable</html>")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			err := DecodeJSON(tt.body, &v)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.NotNil(t, v)
		})
	}
}

func TestStatusErrorIsAnError(t *testing.T) {
	var err error = &StatusError{StatusCode: 429, Status: "429 Too Many Requests"}
	wrapped := fmt.Errorf("poll x: %w", err)
	var se *StatusError
	require.True(t, errors.As(wrapped, &se))
	assert.Equal(t, 429, se.StatusCode)
}

// benchDoc builds a realistic JSON document of about size bytes: an array of
// feature-like objects with strings, numbers and a little nesting.
func benchDoc(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"type":"FeatureCollection","features":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"https://api.example.com/alerts/%d","type":"Feature","geometry":{"type":"Point","coordinates":[%d.25,-%d.5]},"properties":{"event":"Flood [warning]","headline":"Flood warning {issued} \"now\"","severity":"Moderate","areas":["A","B","C"],"sent":"2025-06-03T10:00:00Z","n":%d}}`, i, i%180, i%90, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func BenchmarkDecodeJSON(b *testing.B) {
	doc := benchDoc(1 << 20)
	b.Run("checkDepth", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		for b.Loop() {
			if err := checkDepth(doc, MaxJSONDepth); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		for b.Loop() {
			var v any
			if err := json.Unmarshal(doc, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeJSON", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		for b.Loop() {
			var v any
			if err := DecodeJSON(doc, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestVersionSetAtBuildTime is run by test/deploy with the Makefile's and
// the Dockerfile's -ldflags and POLLGRID_WANT_VERSION set: a release build
// must name its version in the User-Agent, not "dev".
func TestVersionSetAtBuildTime(t *testing.T) {
	want, ok := os.LookupEnv("POLLGRID_WANT_VERSION")
	if !ok {
		t.Skip("run by test/deploy with a build's -ldflags")
	}
	assert.Equal(t, want, Version)
	assert.Equal(t, "pollgrid/"+want+" (+https://github.com/pollgrid/pollgrid)", Options{}.withDefaults().UserAgent)
}
