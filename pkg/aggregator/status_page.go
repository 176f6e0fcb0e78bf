package aggregator

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/store"
)

// connectorTemplate is a connector's page, rendered on the server:
// html/template escapes every value, so an upstream's error or a cursor
// shows as the text it is, whatever markup it holds.
var connectorTemplate = template.Must(template.New("connector.html").Funcs(template.FuncMap{
	"chartWidth":  func() int { return chartWidth },
	"chartHeight": func() int { return chartHeight },
	"ago":         func(t *time.Time) string { return since(time.Now(), *t) },
	"percent":     func(v float64) string { return fmt.Sprintf("%.1f%%", v*100) },
	"seconds":     formatSeconds,
}).ParseFS(statusPage, "statuspage/connector.html"))

// listFilters are the list's query parameters a connector's page carries
// back: the list it was opened from, as it was filtered and paged.
var listFilters = []string{"query", "type", "health", "offset"}

// connectorPage is what connector.html shows.
type connectorPage struct {
	Status admin.Status
	Now    time.Time
	// Back is the list with the filters it was opened with; Filtered
	// says it has some. TypeLink is the list of the connector's type.
	Back     string
	Filtered bool
	TypeLink string
	// NextDue says when the connector polls next, in words.
	NextDue string
	// Backoff says whose wait a back-off is, and how long it still lasts.
	Backoff string
	// Budget says the connector's rate-limit budget and what it has left;
	// "" when it has none.
	Budget string
	Charts []chart
	Recent chart
	// Polls are the latest polls, newest first.
	Polls []admin.Poll
}

// recentRows is how many of the latest polls the page's table lists.
const recentRows = 20

// connectorPageHandler serves GET /connectors/{name}.
func (a *Aggregator) connectorPageHandler(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	filters := url.Values{}
	for _, k := range listFilters {
		if v := r.URL.Query().Get(k); v != "" {
			filters.Set(k, v)
		}
	}
	back := "/"
	if len(filters) > 0 {
		back += "?" + filters.Encode()
	}
	st, err := a.status(r.Context(), r.PathValue("name"), now)
	if err != nil {
		status := http.StatusServiceUnavailable
		if e, ok := errors.AsType[*admin.Error](err); ok && e.Code == admin.CodeNotFound {
			status = http.StatusNotFound
		}
		writePageError(w, status, back, err.Error())
		return
	}
	rollups, err := a.history.Rollups(r.Context(), st.Name, history.PerQuarterHour, now.Add(-chartSpan), now)
	if err != nil {
		writePageError(w, http.StatusServiceUnavailable, back, "reading rollups from Redis failed: "+err.Error())
		return
	}
	page := connectorPage{
		Status: st, Now: now, Back: back, Filtered: len(filters) > 0,
		TypeLink: "/?" + url.Values{"type": {st.Type}}.Encode(),
		NextDue:  nextDue(st, now), Backoff: backoff(st),
		Charts: dayCharts(quarterHours(rollups, now)), Recent: recentChart(st.Recent),
	}
	if st.Budget != nil {
		page.Budget = st.Budget.Summary(now)
	}
	for i := len(st.Recent) - 1; i >= 0 && len(page.Polls) < recentRows; i-- {
		page.Polls = append(page.Polls, st.Recent[i])
	}
	// a.status cleaned what may hold a secret (errors, cursor, ETag).
	var body bytes.Buffer
	if err := connectorTemplate.Execute(&body, page); err != nil {
		writePageError(w, http.StatusInternalServerError, back, "render the page: "+err.Error())
		return
	}
	pageHeaders(w)
	// The last guard, as the JSON routes have theirs.
	_, _ = io.WriteString(w, a.opts.Redactor.String(body.String()))
}

// nextDue says when a connector polls next, or why it does not.
func nextDue(st admin.Status, now time.Time) string {
	switch {
	case !st.Enabled:
		return "never: the config disables it"
	case st.Paused:
		return "not while paused (pollctl resume " + st.Name + ")"
	case st.NextDue == nil:
		return "an interval after its first poll"
	}
	if d := st.NextDue.Sub(now); d > time.Second {
		return "in " + admin.ShortDuration(d)
	}
	return "now"
}

// backoff says whose wait a back-off is and how long it still lasts.
func backoff(st admin.Status) string {
	whose := "ours, after failed polls"
	if st.BackoffBy == store.WaitUpstream {
		whose = "the upstream asked (Retry-After or its rate limit)"
	}
	return fmt.Sprintf("%s more; %s", admin.ShortDuration(time.Duration(st.BackoffSeconds*float64(time.Second))), whose)
}

// since says how long before now t was, in the largest whole unit.
func since(now, t time.Time) string {
	if d := now.Sub(t); d >= 0 {
		return admin.ShortDuration(d) + " ago"
	}
	return "in " + admin.ShortDuration(t.Sub(now))
}

// pageHeaders are every status page's: HTML, never cached, and a policy
// that lets it load only its own stylesheet and run only its inline script.
func pageHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'self'; img-src 'self' data:")
}

// pageErrorTemplate is a page that could not be shown: what went wrong, and
// the way back.
var pageErrorTemplate = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pollgrid status</title><link rel="stylesheet" href="/style.css"></head>
<body><header><h1><a href="{{.Back}}">pollgrid</a></h1><a class="chip" id="back" href="{{.Back}}">‹ all connectors</a></header>
<main><p class="empty" id="page-error">{{.Message}}</p></main></body></html>
`))

func writePageError(w http.ResponseWriter, status int, back, message string) {
	pageHeaders(w)
	w.WriteHeader(status)
	_ = pageErrorTemplate.Execute(w, struct{ Back, Message string }{back, message})
}
