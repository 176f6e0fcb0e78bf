package chaos

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lifeUpstream is the API of the ordinary-life scenarios: each path
// (/life/<connector>) answers what its scenario set last, the items it
// lists or a failure, and remembers every answer it gave. It listens on
// 127.0.0.2 like the fault suite's upstream (UPSTREAM_ALLOW).
type lifeUpstream struct {
	URL string
	srv *http.Server

	mu    sync.Mutex
	paths map[string]*lifePath
}

// lifeItem is one item as the API lists it.
type lifeItem struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

// lifePath is what one connector's path answers now, and what it answered.
type lifePath struct {
	items      []lifeItem // never modified once set: answers share it
	body       []byte     // items encoded
	status     int        // 0: 200 with the items; else this status, empty
	retryAfter string     // Retry-After of a failure, "" for none
	answers    []answer
}

// answer is one request and what it got.
type answer struct {
	at     time.Time
	status int
	items  []lifeItem // listed by a 200
}

func newLifeUpstream(t testing.TB) *lifeUpstream {
	l, err := net.Listen("tcp", "127.0.0.2:0")
	require.NoError(t, err)
	u := &lifeUpstream{URL: "http://" + l.Addr().String(), paths: map[string]*lifePath{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /life/{name}", u.serve)
	u.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = u.srv.Serve(l) }()
	t.Cleanup(func() { _ = u.srv.Close() })
	return u
}

func (u *lifeUpstream) path(name string) *lifePath {
	p := u.paths[name]
	if p == nil {
		p = &lifePath{body: []byte(`{"items":[]}`)}
		u.paths[name] = p
	}
	return p
}

// list makes name's path answer 200 with items from now on.
func (u *lifeUpstream) list(name string, items ...lifeItem) {
	body, _ := json.Marshal(map[string]any{"items": items})
	u.mu.Lock()
	defer u.mu.Unlock()
	p := u.path(name)
	p.items, p.body = items, body
}

// fail makes name's path answer status (with Retry-After when retryAfter is
// not "") until heal.
func (u *lifeUpstream) fail(name string, status int, retryAfter string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	p := u.path(name)
	p.status, p.retryAfter = status, retryAfter
}

func (u *lifeUpstream) heal(name string) { u.fail(name, 0, "") }

func (u *lifeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	p := u.path(r.PathValue("name"))
	status, retryAfter, body, items := p.status, p.retryAfter, p.body, p.items
	if status == 0 {
		status = http.StatusOK
	}
	a := answer{at: time.Now(), status: status}
	if status == http.StatusOK {
		a.items = items
	}
	p.answers = append(p.answers, a)
	u.mu.Unlock()
	if status != http.StatusOK {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// answers returns every answer name's path gave, oldest first.
func (u *lifeUpstream) answers(name string) []answer {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]answer(nil), u.path(name).answers...)
}

// firstOK is the first 200 answered at or after from (zero when none).
func (u *lifeUpstream) firstOK(name string, from time.Time) time.Time {
	for _, a := range u.answers(name) {
		if a.status == http.StatusOK && !a.at.Before(from) {
			return a.at
		}
	}
	return time.Time{}
}

// okSince counts the 200s answered at or after from.
func (u *lifeUpstream) okSince(name string, from time.Time) int {
	n := 0
	for _, a := range u.answers(name) {
		if a.status == http.StatusOK && !a.at.Before(from) {
			n++
		}
	}
	return n
}

// requestsSince counts the requests at or after from.
func (u *lifeUpstream) requestsSince(name string, from time.Time) int {
	n := 0
	for _, a := range u.answers(name) {
		if !a.at.Before(from) {
			n++
		}
	}
	return n
}

// change is one change of one item, as a consumer of SIGNALS should see it.
type change struct {
	item, version, kind string
}

// changes are the changes the 200 answers of name showed, in order: an
// item's first version is created, each different version after it is
// updated (a return to an earlier version included).
func (u *lifeUpstream) changes(name string) []change {
	var out []change
	last := map[string]string{}
	for _, a := range u.answers(name) {
		if a.status != http.StatusOK {
			continue
		}
		for _, it := range a.items {
			v, known := last[it.ID]
			switch {
			case !known:
				out = append(out, change{it.ID, it.Version, "created"})
			case v != it.Version:
				out = append(out, change{it.ID, it.Version, "updated"})
			default:
				continue
			}
			last[it.ID] = it.Version
		}
	}
	return out
}
