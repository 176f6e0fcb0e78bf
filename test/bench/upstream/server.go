package main

import (
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pollgrid/pollgrid/test/bench"
)

type config struct {
	Addr          string
	Connectors    int
	BodyBytes     int
	Delay         time.Duration
	VersionPeriod time.Duration
}

type server struct {
	cfg     config
	padding string

	connections, requests, completed, overlaps, cutCount atomic.Int64
	counter                                              atomic.Int64

	conns []connState

	cutMu sync.Mutex
	cuts  []bench.UpstreamCut
}

// connState is what the upstream knows of one connector.
type connState struct {
	mu       sync.Mutex
	inFlight int
	starts   []int64 // unix ns, ascending
	last     string  // version of the last answer written whole
}

func newServer(cfg config) *server {
	s := &server{cfg: cfg, conns: make([]connState, cfg.Connectors)}
	// The answer without padding is about 60 bytes.
	if pad := cfg.BodyBytes - 60; pad > 0 {
		s.padding = strings.Repeat("x", pad)
	}
	return s
}

func (s *server) connState(_ net.Conn, st http.ConnState) {
	if st == http.StateNew {
		s.connections.Add(1)
	}
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{i}", s.item)
	mux.HandleFunc("GET /stats", s.stats)
	mux.HandleFunc("GET /polls", s.polls)
	mux.HandleFunc("GET /cuts", s.cutList)
	mux.HandleFunc("GET /versions", s.versions)
	return mux
}

func (s *server) version(now time.Time) string {
	if s.cfg.VersionPeriod > 0 {
		return strconv.FormatInt(now.UnixNano()/int64(s.cfg.VersionPeriod), 10)
	}
	return strconv.FormatInt(s.counter.Add(1), 10)
}

func (s *server) item(w http.ResponseWriter, r *http.Request) {
	i, err := strconv.Atoi(r.PathValue("i"))
	if err != nil || i < 0 || i >= len(s.conns) {
		http.NotFound(w, r)
		return
	}
	c := &s.conns[i]
	c.mu.Lock()
	start := time.Now() // under the lock, so that starts stay ascending
	if c.inFlight > 0 {
		s.overlaps.Add(1)
	}
	c.inFlight++
	c.starts = append(c.starts, start.UnixNano())
	c.mu.Unlock()
	s.requests.Add(1)
	defer func() {
		c.mu.Lock()
		c.inFlight--
		c.mu.Unlock()
	}()

	if s.cfg.Delay > 0 {
		t := time.NewTimer(s.cfg.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			// The client closed its connection before the answer: for a
			// worker that was killed mid-poll, this is its poll cut.
			t.Stop()
			s.cutCount.Add(1)
			s.cutMu.Lock()
			s.cuts = append(s.cuts, bench.UpstreamCut{Connector: i, AtNS: time.Now().UnixNano(), StartNS: start.UnixNano()})
			s.cutMu.Unlock()
			return
		}
	}
	v := s.version(time.Now())
	body := make([]byte, 0, len(s.padding)+80)
	body = append(body, `{"items":[{"id":"`...)
	body = strconv.AppendInt(body, int64(i), 10)
	body = append(body, `","version":`...)
	body = append(body, v...)
	if s.padding != "" {
		body = append(body, `,"payload":"`...)
		body = append(body, s.padding...)
		body = append(body, '"')
	}
	body = append(body, "}]}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if _, err := w.Write(body); err != nil {
		return
	}
	s.completed.Add(1)
	c.mu.Lock()
	c.last = v
	c.mu.Unlock()
}

func (s *server) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, bench.UpstreamStats{
		Connections: s.connections.Load(), Requests: s.requests.Load(), Completed: s.completed.Load(),
		Overlaps: s.overlaps.Load(), Cuts: s.cutCount.Load(),
	})
}

func (s *server) polls(w http.ResponseWriter, r *http.Request) {
	since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	sinceNS := since * int64(time.Millisecond)
	// 100,000 connectors × a few polls: write the arrays by hand rather
	// than through reflection.
	buf := make([]byte, 0, 1<<20)
	buf = append(buf, `{"times":[`...)
	for i := range s.conns {
		c := &s.conns[i]
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '[')
		c.mu.Lock()
		k, _ := slices.BinarySearch(c.starts, sinceNS)
		for j, ns := range c.starts[k:] {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendInt(buf, ns/int64(time.Millisecond), 10)
		}
		c.mu.Unlock()
		buf = append(buf, ']')
	}
	buf = append(buf, "]}\n"...)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf)
}

func (s *server) cutList(w http.ResponseWriter, r *http.Request) {
	since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	s.cutMu.Lock()
	var out []bench.UpstreamCut
	for _, c := range s.cuts {
		if c.AtNS >= since {
			out = append(out, c)
		}
	}
	s.cutMu.Unlock()
	for k := range out {
		c := &s.conns[out[k].Connector]
		c.mu.Lock()
		// The next request after the cut one.
		if j, _ := slices.BinarySearch(c.starts, out[k].StartNS+1); j < len(c.starts) {
			out[k].NextNS = c.starts[j]
		}
		c.mu.Unlock()
	}
	if out == nil {
		out = []bench.UpstreamCut{}
	}
	writeJSON(w, out)
}

func (s *server) versions(w http.ResponseWriter, _ *http.Request) {
	v := bench.UpstreamVersions{Last: make([]string, len(s.conns))}
	for i := range s.conns {
		s.conns[i].mu.Lock()
		v.Last[i] = s.conns[i].last
		s.conns[i].mu.Unlock()
	}
	writeJSON(w, v)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
