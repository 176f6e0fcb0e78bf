package aggregator

import (
	"embed"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/history"
)

// statusPage is the status page, no build step: the list (index.html, its
// JS inline, which reads the JSON routes below and refreshes itself), a
// page per connector rendered on the server (connector.html, status_page.go)
// and their stylesheet.
//
//go:embed statuspage/index.html statuspage/connector.html statuspage/style.css
var statusPage embed.FS

// StatusDetail is GET /api/connectors/{name}: the status verb's answer plus
// the per-minute rollups of the last hour, for the page's charts.
type StatusDetail struct {
	admin.Status
	Minutes []Minute `json:"minutes"`
}

// Minute is one per-minute rollup.
type Minute struct {
	Start      time.Time `json:"start"`
	Polls      int64     `json:"polls"`
	Successes  int64     `json:"successes"`
	Failures   int64     `json:"failures"`
	Skipped    int64     `json:"skipped"`
	LatencyAvg float64   `json:"latency_avg_seconds"`
	LatencyMax float64   `json:"latency_max_seconds"`
}

func (a *Aggregator) statusRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		page, err := statusPage.ReadFile("statuspage/index.html")
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		pageHeaders(w)
		_, _ = w.Write(page)
	})
	mux.HandleFunc("GET /style.css", func(w http.ResponseWriter, _ *http.Request) {
		css, err := statusPage.ReadFile("statuspage/style.css")
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(css)
	})
	// GET /connectors/{name}: one connector's page, with the list's
	// filters (query, type, health, offset) carried in its link back.
	mux.HandleFunc("GET /connectors/{name}", a.connectorPageHandler)
	// GET /api/connectors: the list verb over HTTP, its filters as query
	// parameters (query, type, health, offset, limit).
	mux.HandleFunc("GET /api/connectors", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		req := admin.ListRequest{Query: q.Get("query"), Type: q.Get("type"), Health: q.Get("health")}
		for _, p := range []struct {
			name string
			dst  *int
		}{{"offset", &req.Offset}, {"limit", &req.Limit}} {
			if v := q.Get(p.name); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil {
					writeError(w, http.StatusBadRequest, p.name+"="+strconv.Quote(v)+" is not a whole number")
					return
				}
				*p.dst = n
			}
		}
		reply, err := a.list(r.Context(), req, time.Now())
		if err != nil {
			writeAdminError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, a.redacted(reply))
	})
	mux.HandleFunc("GET /api/connectors/{name}", func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		st, err := a.status(r.Context(), r.PathValue("name"), now)
		if err != nil {
			writeAdminError(w, err)
			return
		}
		d := StatusDetail{Status: st, Minutes: []Minute{}}
		rollups, err := a.history.Rollups(r.Context(), st.Name, history.PerMinute, now.Add(-time.Hour), now)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "reading rollups from Redis failed: "+err.Error())
			return
		}
		for _, m := range rollups {
			d.Minutes = append(d.Minutes, Minute{Start: m.Start, Polls: m.Polls, Successes: m.Successes, Failures: m.Failures,
				Skipped: m.Skipped, LatencyAvg: m.LatencyAvg().Seconds(), LatencyMax: m.LatencyMax.Seconds()})
		}
		writeJSON(w, http.StatusOK, a.redacted(d))
	})
}

// redacted passes every string of v through the secret redactor, as the
// admin service does for its replies.
func (a *Aggregator) redacted(v any) any {
	b, err := admin.Redacted(v, a.opts.Redactor.String)
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	return b
}

func writeAdminError(w http.ResponseWriter, err error) {
	var e *admin.Error
	if errors.As(err, &e) {
		status := e.Code
		if status < 400 || status > 599 {
			status = http.StatusInternalServerError
		}
		writeError(w, status, e.Message)
		return
	}
	writeError(w, http.StatusInternalServerError, err.Error())
}
