package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/pollgrid/pollgrid/pkg/admin"
)

// list shortens a last error to its column by dropping the labels in front
// of it ("poll NAME: nws alerts: Get URL:"), not the cause at its end.
func TestListKeepsTheErrorsCause(t *testing.T) {
	var out bytes.Buffer
	printList(&out, admin.ListReply{
		Connectors: []admin.Connector{{Name: "guarded", Type: "weather-noaa", Health: admin.HealthFailing, Interval: "10s",
			LastError: `poll guarded: nws alerts: Get http://10.255.255.1:9911/alerts/active?area=AZ: outbound guard refused to connect to 10.255.255.1:9911: a private address (to allow it, add "10.255.255.1" to config.allow_hosts)`},
			{Name: "quakes", Type: "usgs-earthquakes", Health: admin.HealthStale, Stale: true, MissedIntervals: 4, Interval: "1m",
				LastError: "poll quakes: usgs all_hour: Get https://earthquake.usgs.gov/feed: dial tcp 10.0.0.1:443: connect: connection refused"}},
		Counts: map[string]int{admin.HealthFailing: 1, admin.HealthStale: 1}, StaleAfter: 3,
	}, false)
	assert.Contains(t, out.String(), "…outbound guard refused to connect to 10.255.255.1:9911: a private ad…")
	assert.Contains(t, out.String(), "4 intervals missed; …connect: connection refused")
	assert.NotContains(t, out.String(), "poll guarded:")
}

// The footer counts the rows it follows: a filtered list says how many of
// all it shows, and the healths of those it shows.
func TestListFooterCountsWhatItShows(t *testing.T) {
	counts := map[string]int{admin.HealthFailing: 3, admin.HealthOK: 1}
	tests := []struct {
		name     string
		shown    []admin.Connector
		filtered bool
		want     string
	}{
		{name: "every connector", filtered: false,
			shown: []admin.Connector{{Name: "a", Health: "failing"}, {Name: "b", Health: "failing"}, {Name: "c", Health: "failing"}, {Name: "d", Health: "ok"}},
			want:  "4 connectors: 3 failing, 1 ok (stale after 3 missed intervals)"},
		{name: "--health ok", filtered: true, shown: []admin.Connector{{Name: "d", Health: "ok"}},
			want: "1 of 4 connectors shown: 1 ok (stale after 3 missed intervals)"},
		{name: "a filter nothing matches", filtered: true,
			want: "0 of 4 connectors shown (stale after 3 missed intervals)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			printList(&out, admin.ListReply{Connectors: tt.shown, Counts: counts, StaleAfter: 3}, tt.filtered)
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			assert.Equal(t, tt.want, lines[len(lines)-1])
		})
	}
}

// A config every process rejects for the same problems is listed once,
// under the processes that rejected it.
func TestReloadPrintsEachProblemOnce(t *testing.T) {
	problems := []admin.Problem{{Path: "connectors[1].interval", Message: `"10" is not a duration (write "10s")`}}
	var out bytes.Buffer
	printReload(&out, []admin.ReloadReply{
		{Service: "worker", Replica: "w2", Connectors: 4, Problems: problems},
		{Service: "scheduler", Replica: "s1", Connectors: 4, Problems: problems},
		{Service: "aggregator", Replica: "a1", Connectors: 4, Problems: problems},
		{Service: "worker", Replica: "w1", Connectors: 4, Problems: problems},
	}, nil)
	assert.Equal(t, `rejected by aggregator a1, scheduler s1, worker w1, worker w2; the catalog stays as it was:
  connectors[1].interval: "10" is not a duration (write "10s")
`, out.String())

	out.Reset()
	printReload(&out, []admin.ReloadReply{
		{Service: "worker", Replica: "w1", Connectors: 4, Problems: problems},
		{Service: "worker", Replica: "w2", Connectors: 3, Error: "read /etc/pollgrid/connectors.json: permission denied"},
		{Service: "scheduler", Replica: "s1", OK: true, Connectors: 5, Enabled: 5},
	}, []string{"aggregator a1 (XYZ)"})
	assert.Equal(t, `scheduler s1: ok, 5 connectors (5 enabled)
rejected by worker w1; the catalog stays as it was:
  connectors[1].interval: "10" is not a duration (write "10s")
rejected by worker w2; the catalog stays as it was:
  read /etc/pollgrid/connectors.json: permission denied
aggregator a1 (XYZ): did not answer
`, out.String())
}

// status names the connector's budget and what it has left.
func TestStatusShowsTheBudget(t *testing.T) {
	var out bytes.Buffer
	next := time.Now().Add(14*time.Second + 300*time.Millisecond)
	printStatus(&out, admin.Status{Connector: admin.Connector{Name: "gh", Type: "github-releases", Interval: "1s", Health: admin.HealthOK},
		Budget: &admin.BudgetUse{Name: "github-main", Rate: "60 per 1m (burst 5)", Connectors: 20, FairEverySeconds: 20,
			NextAt: &next, FullAt: &next}})
	assert.Contains(t, out.String(), "budget:")
	assert.Contains(t, out.String(), "github-main: 60 per 1m (burst 5), shared by 20 connectors (a request every 20s each when all want more); "+
		"spent: the next request in 14s")
}

// An adaptive connector shows the interval its polls come at now: list in
// its interval column, status in a line of its own with its bounds.
func TestAdaptiveConnectorShowsItsEffectiveInterval(t *testing.T) {
	adaptive := admin.Connector{Name: "burst", Type: "github-releases", Interval: "1m0s", Adaptive: "10s..10m", EffectiveInterval: "34s",
		Health: admin.HealthOK}
	fixed := admin.Connector{Name: "steady", Type: "github-releases", Interval: "5m0s", Health: admin.HealthOK}
	var out bytes.Buffer
	printList(&out, admin.ListReply{Connectors: []admin.Connector{adaptive, fixed}, Counts: map[string]int{admin.HealthOK: 2}, StaleAfter: 3}, false)
	lines := strings.Split(out.String(), "\n")
	assert.Regexp(t, `^ok\s+burst\s+github-releases\s+34s \(adaptive\)\s`, lines[1])
	assert.Regexp(t, `^ok\s+steady\s+github-releases\s+5m0s\s`, lines[2])

	out.Reset()
	printStatus(&out, admin.Status{Connector: adaptive})
	assert.Regexp(t, `effective interval:\s+34s \(adaptive 10s..10m: shorter after polls that find changes, longer after those that find none\)`, out.String())
	out.Reset()
	printStatus(&out, admin.Status{Connector: fixed})
	assert.NotContains(t, out.String(), "effective interval")
}
