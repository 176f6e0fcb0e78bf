package connectortest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// Recorder is an http.RoundTripper that passes each request on and saves its
// answer where Load reads it back: the body as <Dir>/<name>.<ext> and the
// status and headers as <Dir>/<name>.headers.json, the format of
// shared/fixtures. Record a real upstream once, by hand, then replay the
// files in tests:
//
//	rec := &connectortest.Recorder{Dir: "testdata", Next: http.DefaultTransport}
//	c, err := weathernoaa.New(raw, connector.Deps{HTTP: &http.Client{Transport: rec}})
//	// poll once, then check the files into testdata/ with a PROVENANCE.md line
//
// Recordings never hold a credential: the request is saved as its method
// and its URL as upstream.ShowURL shows it (query values masked), without
// its headers.
type Recorder struct {
	// Dir is where the files go; it must exist.
	Dir string
	// Name gives an answer's file name, without extension. Default: the
	// request path with "/" as "_" ("alerts_active"), and "_2", "_3"...
	// when a name comes again.
	Name func(*http.Request) string
	// Next sends the requests; nil means http.DefaultTransport.
	Next http.RoundTripper

	mu   sync.Mutex
	used map[string]int
}

// RoundTrip implements http.RoundTripper.
func (r *Recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	next := r.Next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := r.save(r.name(req), req, resp, body); err != nil {
		return nil, fmt.Errorf("connectortest: record %s: %w", upstream.ShowURL(req.URL), err)
	}
	return resp, nil
}

func (r *Recorder) name(req *http.Request) string {
	name := strings.Trim(strings.ReplaceAll(req.URL.Path, "/", "_"), "_")
	if r.Name != nil {
		name = r.Name(req)
	}
	name = strings.TrimSuffix(name, headersFileSuffix)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.used == nil {
		r.used = map[string]int{}
	}
	r.used[name]++
	if n := r.used[name]; n > 1 {
		name = fmt.Sprintf("%s_%d", name, n)
	}
	return name
}

// recording is the .headers.json format.
type recording struct {
	RecordedRequest struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	} `json:"recorded_request"`
	Status  int         `json:"status"`
	Headers [][2]string `json:"headers"`
}

func (r *Recorder) save(name string, req *http.Request, resp *http.Response, body []byte) error {
	var rec recording
	rec.RecordedRequest.Method = req.Method
	rec.RecordedRequest.URL = upstream.ShowURL(req.URL)
	rec.Status = resp.StatusCode
	for _, key := range slices.Sorted(maps.Keys(resp.Header)) {
		for _, v := range resp.Header[key] {
			rec.Headers = append(rec.Headers, [2]string{key, v})
		}
	}
	encoded, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.Dir, name+headersFileSuffix), append(encoded, '\n'), 0o644); err != nil {
		return err
	}
	if len(body) == 0 {
		return nil // Load reads the .headers.json alone as a bodiless answer
	}
	return os.WriteFile(filepath.Join(r.Dir, name+extensionOf(resp.Header.Get("Content-Type"))), body, 0o644)
}

// extensionOf names a body file by its media type, for people reading
// testdata/: Load takes the Content-Type from the headers file, never from
// the extension.
func extensionOf(contentType string) string {
	media, _, _ := mime.ParseMediaType(contentType)
	switch {
	case strings.HasSuffix(media, "json"):
		return ".json"
	case strings.HasSuffix(media, "xml"):
		return ".xml"
	case media == "text/html":
		return ".html"
	default:
		return ".txt"
	}
}
