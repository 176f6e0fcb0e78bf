package chaos

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// upstream is an API whose items change on a schedule: item j of connector
// c is at version floor((t-t0)/period + phase(c, j)), so every version lives
// exactly one period and the suite knows when each existed. It answers on
// 127.0.0.2, which workers are allowed to reach (UPSTREAM_ALLOW), while
// Redis and NATS stay on 127.0.0.1, which they are not.
type upstream struct {
	t      testing.TB
	srv    *http.Server
	URL    string
	t0     time.Time
	period time.Duration
	items  int

	mu       sync.Mutex
	requests map[string][]time.Time // connector -> arrival of each request
	mode     map[string]string      // connector -> "", "slow", "hang"
	hung     chan struct{}          // closed to release hung requests
	headers  map[string][]http.Header
}

func newUpstream(t testing.TB, period time.Duration, items int) *upstream {
	l, err := net.Listen("tcp", "127.0.0.2:0")
	require.NoError(t, err)
	u := &upstream{t: t, URL: "http://" + l.Addr().String(), t0: time.Now().Truncate(time.Second), period: period, items: items,
		requests: map[string][]time.Time{}, mode: map[string]string{}, hung: make(chan struct{}), headers: map[string][]http.Header{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{name}", u.serveItems)
	mux.HandleFunc("GET /hostile/{kind}", serveHostile)
	mux.HandleFunc("GET /redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	})
	mux.HandleFunc("GET /echo/{name}", u.serveEcho)
	u.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = u.srv.Serve(l) }()
	t.Cleanup(func() { u.release(); _ = u.srv.Close() })
	return u
}

// newUpstreamOn serves u on another loopback address too (another host, for
// cross-host redirects) and returns its base URL.
func newUpstreamOn(t testing.TB, host string, u *upstream) string {
	l, err := net.Listen("tcp", host+":0")
	require.NoError(t, err)
	srv := &http.Server{Handler: u.srv.Handler, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

func httpGet(url string) (int, string) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// phase spreads the changes of items over the period.
func phase(conn string, item int) float64 {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", conn, item)
	return float64(h.Sum32()%1000) / 1000
}

// version is item's version at time at.
func (u *upstream) version(conn string, item int, at time.Time) int64 {
	return int64(float64(at.Sub(u.t0))/float64(u.period) + phase(conn, item))
}

// lifetime is when version v of item was current.
func (u *upstream) lifetime(conn string, item int, v int64) (from, to time.Time) {
	start := (float64(v) - phase(conn, item)) * float64(u.period)
	return u.t0.Add(time.Duration(start)), u.t0.Add(time.Duration(start) + u.period)
}

type item struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
	Updated int64  `json:"updated"` // when this version began, ms: the cursor
}

func (u *upstream) serveItems(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	now := time.Now()
	u.mu.Lock()
	u.requests[name] = append(u.requests[name], now)
	mode := u.mode[name]
	hung := u.hung
	u.mu.Unlock()
	switch mode {
	case "hang":
		select {
		case <-hung:
		case <-r.Context().Done():
		}
		return
	case "slow":
		time.Sleep(700 * time.Millisecond) // under the 900ms timeout
	default:
		// Some latency, so that polls are in flight when a worker dies.
		time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
	}
	now = time.Now()
	items := make([]item, u.items)
	for j := range u.items {
		v := u.version(name, j, now)
		from, _ := u.lifetime(name, j, v)
		items[j] = item{ID: "i" + strconv.Itoa(j), Version: v, Updated: from.UnixMilli()}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"items": items})
}

// serveEcho answers an item that echoes the request's X-Api-Token, as a
// careless API quoting the request back would, and records the headers.
func (u *upstream) serveEcho(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.headers[r.PathValue("name")] = append(u.headers[r.PathValue("name")], r.Header.Clone())
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"items": []map[string]any{{"id": "echo", "version": 1,
		"note": "you sent " + r.Header.Get("X-Api-Token")}}})
}

func (u *upstream) setMode(name, mode string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.mode[name] = mode
}

// release lets hung requests go (and later ones hang again).
func (u *upstream) release() {
	u.mu.Lock()
	defer u.mu.Unlock()
	close(u.hung)
	u.hung = make(chan struct{})
}

func (u *upstream) requestsOf(name string) []time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]time.Time(nil), u.requests[name]...)
}

func (u *upstream) headersOf(name string) []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.headers[name]...)
}

// serveHostile answers bodies a poll must survive.
func serveHostile(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch r.PathValue("kind") {
	case "gzip-bomb": // 256 MiB of zeros in a quarter MiB
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(gzipBomb())
	case "deep":
		_, _ = io.WriteString(w, `{"items": `+strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000)+`}`)
	case "bad-utf8":
		_, _ = w.Write([]byte("{\"items\": [{\"id\": \"x\xff\xfe\", \"version\": 1}]}"))
	case "huge": // 64 MiB, over the 8 MiB cap
		chunk := bytes.Repeat([]byte(" "), 1<<20)
		_, _ = io.WriteString(w, `{"items": [], "pad": "`)
		for range 64 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		_, _ = io.WriteString(w, `"}`)
	}
}

var gzipBomb = sync.OnceValue(func() []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	_, _ = zw.Write([]byte(`{"items": "`))
	for range 256 {
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	return buf.Bytes()
})
