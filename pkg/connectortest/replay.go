package connectortest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Response is one recorded HTTP answer.
type Response struct {
	// Status is the HTTP status; 0 means 200.
	Status int
	// Header is sent as is (repeated names keep every value).
	Header http.Header
	// Body is sent as is; nil sends no body.
	Body []byte
}

// JSON is an answer with status and body, sent as application/json.
func JSON(status int, body []byte) Response {
	return Response{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: body}
}

// ServeHTTP writes the response as it is (no origin rewritten), for a
// handler whose answer depends on the request: resp.ServeHTTP(w, r).
func (r Response) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	writeResponse(w, r, nil, nil)
}

// WithHeader returns a copy with name set to value, replacing every
// recorded value of name.
func (r Response) WithHeader(name, value string) Response {
	header := r.Header.Clone()
	if header == nil {
		header = http.Header{}
	}
	header.Set(name, value)
	r.Header = header
	return r
}

// WithoutHeader returns a copy without name.
func (r Response) WithoutHeader(name string) Response {
	r.Header = r.Header.Clone()
	r.Header.Del(name)
	return r
}

// WithBody returns a copy with another body (a recording's headers on
// altered data).
func (r Response) WithBody(body []byte) Response {
	r.Body = body
	return r
}

// headersFileSuffix names the recorded status and headers of a body file:
// list_issues_page1.json → list_issues_page1.headers.json.
const headersFileSuffix = ".headers.json"

// droppedHeaders describe the recorded connection or encoding, not the
// answer: replaying them would lie about the body we actually send (which
// may be rewritten, and is never compressed).
var droppedHeaders = []string{"Content-Length", "Content-Encoding", "Transfer-Encoding", "Connection", "Keep-Alive", "Status"}

// Load reads a recorded response. A bare name is looked up in the test's
// testdata/ folder; a path starting with "./", "../" or "/" is used as is
// (another package's testdata: "../weather-noaa/testdata/x.json").
//
// The file is the body. Its sibling <name>.headers.json, when present, gives
// the status and headers ({"status": 200, "headers": [[name, value], ...]});
// other fields such as "recorded_request" are ignored. Loading a
// *.headers.json file itself gives a response with no body (a recorded 304).
// Content-Length, Content-Encoding, Transfer-Encoding and Connection are
// dropped. Nothing is guessed: a body recorded without headers is served
// without a Content-Type (the server does not sniff one either), so a
// connector meets exactly what was recorded, application/geo+json or
// application/rss+xml included. Record real answers with Recorder. A missing
// or malformed file fails the test.
func Load(t testing.TB, path string) Response {
	t.Helper()
	file := path
	if !filepath.IsAbs(path) && !strings.HasPrefix(path, "./") && !strings.HasPrefix(path, "../") {
		file = filepath.Join("testdata", path)
	}
	var resp Response
	headersFile := file
	if !strings.HasSuffix(file, headersFileSuffix) {
		body, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("connectortest: load recorded response: %v", err)
		}
		resp.Body = body
		headersFile = strings.TrimSuffix(file, filepath.Ext(file)) + headersFileSuffix
	}
	raw, err := os.ReadFile(headersFile)
	switch {
	case err == nil:
		status, header, err := parseHeadersFile(raw)
		if err != nil {
			t.Fatalf("connectortest: %s: %v (want {\"status\": 200, \"headers\": [[name, value], ...]})", headersFile, err)
		}
		resp.Status, resp.Header = status, header
	case os.IsNotExist(err) && headersFile != file:
		resp.Header = http.Header{}
	default:
		t.Fatalf("connectortest: load recorded headers: %v", err)
	}
	return resp
}

func parseHeadersFile(raw []byte) (int, http.Header, error) {
	var recorded struct {
		Status  int        `json:"status"`
		Headers [][]string `json:"headers"`
	}
	if err := json.Unmarshal(raw, &recorded); err != nil {
		return 0, nil, err
	}
	header := http.Header{}
	for i, pair := range recorded.Headers {
		if len(pair) != 2 {
			return 0, nil, fmt.Errorf("headers[%d] has %d elements, want [name, value]", i, len(pair))
		}
		header.Add(pair[0], pair[1])
	}
	for _, name := range droppedHeaders {
		header.Del(name)
	}
	return recorded.Status, header, nil
}

// Route answers the requests it matches.
type Route struct {
	// Method is the request method; "" means GET and "*" any method.
	Method string
	// Path is the exact URL path ("/alerts/active"); "*" matches every path.
	Path string
	// Query lists parameters the request must carry with exactly these
	// values; parameters not listed are not checked.
	Query url.Values
	// Responses are answered in order; the last one repeats.
	Responses []Response
	// Handler, when set, answers instead of Responses: for what a recording
	// cannot express (a hang, a dropped connection, an echo of the request).
	// It may read the request body, although the server has recorded it.
	Handler http.HandlerFunc
}

// GET is a route for GET requests to path, which may carry a query whose
// parameters must match: GET("/alerts/active?area=WA", resp).
func GET(path string, responses ...Response) Route {
	r := Route{Method: http.MethodGet, Path: path, Responses: responses}
	if p, query, ok := strings.Cut(path, "?"); ok {
		values, err := url.ParseQuery(query)
		if err != nil {
			panic(fmt.Sprintf("connectortest.GET(%q): bad query: %v", path, err))
		}
		r.Path, r.Query = p, values
	}
	return r
}

// Any is a route for every method and path.
func Any(responses ...Response) Route {
	return Route{Method: "*", Path: "*", Responses: responses}
}

func (r Route) matches(req *http.Request) bool {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	if method != "*" && !strings.EqualFold(method, req.Method) {
		return false
	}
	if r.Path != "*" && r.Path != req.URL.Path {
		return false
	}
	got := req.URL.Query()
	for name, want := range r.Query {
		if strings.Join(got[name], "\x00") != strings.Join(want, "\x00") {
			return false
		}
	}
	return true
}

func (r Route) String() string {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	s := method + " " + r.Path
	if len(r.Query) > 0 {
		s += "?" + r.Query.Encode()
	}
	return s
}

// Request is one request the server received.
type Request struct {
	Method string
	// URL is the request target as received: path and query, no host.
	URL    *url.URL
	Header http.Header
	Body   []byte
}

// Server replays recorded responses and records every request. It is an
// httptest.Server, closed when the test ends.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:port, with no trailing
	// slash: put it in the connector's base_url.
	URL string

	t   testing.TB
	srv *httptest.Server

	mu            sync.Mutex
	routes        []*route
	requests      []Request
	origins       []string // rewritten in headers and bodies
	headerOrigins []string // rewritten in headers only
}

type route struct {
	Route
	answered int
}

// Replay starts a server answering with routes. A request is answered by the
// first route that matches it. A request no route matches fails the test
// (with the request and the routes in the message) and gets a 501.
func Replay(t testing.TB, routes ...Route) *Server {
	t.Helper()
	s := &Server{t: t}
	s.Set(routes...)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Serve starts a server that answers every request with handler and records
// it, as Replay does: for an upstream whose answer depends on the request in
// a way routes cannot say (a request header, a cursor in the body, a count of
// calls). Recorded answers can still answer from it: resp.ServeHTTP(w, r).
func Serve(t testing.TB, handler http.HandlerFunc) *Server {
	t.Helper()
	return Replay(t, Route{Method: "*", Path: "*", Handler: handler})
}

// Set replaces the routes from now on, for a test whose upstream changes
// between polls (then answers 500, then 304, ...). Response order restarts.
func (s *Server) Set(routes ...Route) {
	s.t.Helper()
	next := make([]*route, 0, len(routes))
	for i, r := range routes {
		if len(r.Responses) == 0 && r.Handler == nil {
			s.t.Fatalf("connectortest: route %d (%s) has neither Responses nor a Handler", i, r)
		}
		next = append(next, &route{Route: r})
	}
	s.mu.Lock()
	s.routes = next
	s.mu.Unlock()
}

// Rewrite makes every later response point at this server instead of the
// recorded origins ("https://api.github.com"): each origin is replaced by
// s.URL in header values (Link) and bodies (pagination.next), also in its
// JSON-escaped form (https:\/\/...). Ids and data holding the origin change
// too.
func (s *Server) Rewrite(origins ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range origins {
		s.origins = append(s.origins, strings.TrimRight(o, "/"))
	}
}

// RewriteHeaders is Rewrite for header values only (Link): bodies are sent
// as recorded, with the URLs they hold.
func (s *Server) RewriteHeaders(origins ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range origins {
		s.headerOrigins = append(s.headerOrigins, strings.TrimRight(o, "/"))
	}
}

// Requests returns the requests received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Client returns a client for the server (a plain one: it speaks HTTP).
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Close shuts the server down before the test ends, for a test that needs
// an address where nothing answers. The test's end closes it anyway.
func (s *Server) Close() { s.srv.Close() }

func (s *Server) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(body)) // for a Handler
	target := *req.URL
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: req.Method, URL: &target, Header: req.Header.Clone(), Body: body})
	var matched *route
	for _, r := range s.routes {
		if r.matches(req) {
			matched = r
			break
		}
	}
	var resp Response
	if matched != nil && matched.Handler == nil {
		resp = matched.Responses[min(matched.answered, len(matched.Responses)-1)]
		matched.answered++
	}
	headerReplacer := s.replacer(s.origins, s.headerOrigins)
	bodyReplacer := s.replacer(s.origins)
	routes := make([]string, len(s.routes))
	for i, r := range s.routes {
		routes[i] = "  " + r.String()
	}
	s.mu.Unlock()

	switch {
	case matched == nil:
		msg := fmt.Sprintf("connectortest: no route for %s %s\nroutes:\n%s", req.Method, req.URL.RequestURI(), strings.Join(routes, "\n"))
		if len(routes) == 0 {
			msg = fmt.Sprintf("connectortest: no route for %s %s (the server has no routes: this test expects no request)", req.Method, req.URL.RequestURI())
		}
		s.t.Error(msg)
		http.Error(w, msg, http.StatusNotImplemented)
	case matched.Handler != nil:
		matched.Handler(w, req)
	default:
		writeResponse(w, resp, headerReplacer, bodyReplacer)
	}
}

// replacer rewrites the given origins to s.URL; nil when there are none.
func (s *Server) replacer(lists ...[]string) *strings.Replacer {
	var pairs []string
	for _, origins := range lists {
		for _, o := range origins {
			pairs = append(pairs, o, s.URL, jsonEscapeSlashes(o), jsonEscapeSlashes(s.URL))
		}
	}
	if len(pairs) == 0 {
		return nil
	}
	return strings.NewReplacer(pairs...)
}

func jsonEscapeSlashes(s string) string { return strings.ReplaceAll(s, "/", `\/`) }

func writeResponse(w http.ResponseWriter, resp Response, headerReplacer, bodyReplacer *strings.Replacer) {
	for name, values := range resp.Header {
		for _, v := range values {
			if headerReplacer != nil {
				v = headerReplacer.Replace(v)
			}
			w.Header().Add(name, v)
		}
	}
	body := resp.Body
	if bodyReplacer != nil && len(body) > 0 {
		body = []byte(bodyReplacer.Replace(string(body)))
	}
	if w.Header().Get("Content-Type") == "" {
		// What was not recorded is not made up: no sniffed Content-Type.
		w.Header()["Content-Type"] = nil
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	if len(body) > 0 && bodyAllowed(status) {
		_, _ = io.Copy(w, bytes.NewReader(body))
	}
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
