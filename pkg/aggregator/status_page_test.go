package aggregator

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// Per-minute rollups sum into the 96 quarter-hours ending with now's.
func TestQuarterHours(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 7, 30, 0, time.UTC)
	rollups := []history.Rollup{
		{Start: now.Add(-25 * time.Hour), Polls: 99},                                    // before the day: left out
		{Start: time.Date(2026, 12, 6, 10, 15, 0, 0, time.UTC), Polls: 1, Successes: 1}, // the first quarter-hour
		{Start: time.Date(2026, 12, 7, 9, 50, 0, 0, time.UTC), Polls: 2, Failures: 2, LatencySum: 4 * time.Second, LatencyMax: 3 * time.Second},
		{Start: time.Date(2026, 12, 7, 9, 59, 0, 0, time.UTC), Polls: 1, Successes: 1, LatencySum: time.Second, LatencyMax: time.Second,
			ItemsFetched: 5, ItemsPublished: 2},
		{Start: time.Date(2026, 12, 7, 10, 7, 0, 0, time.UTC), Polls: 3, Skipped: 3}, // now's quarter-hour, the last
	}
	b := quarterHours(rollups, now)
	require.Len(t, b, chartBuckets)
	assert.Equal(t, time.Date(2026, 12, 6, 10, 15, 0, 0, time.UTC), b[0].Start)
	assert.EqualValues(t, 1, b[0].Polls)
	nineFortyFive := b[chartBuckets-2]
	assert.Equal(t, time.Date(2026, 12, 7, 9, 45, 0, 0, time.UTC), nineFortyFive.Start)
	assert.EqualValues(t, 3, nineFortyFive.Polls)
	assert.EqualValues(t, 2, nineFortyFive.Failures)
	assert.Equal(t, 5*time.Second/3, nineFortyFive.LatencyAvg(), "over the 3 polls that ran")
	assert.Equal(t, 3*time.Second, nineFortyFive.LatencyMax)
	assert.EqualValues(t, 5, nineFortyFive.ItemsFetched)
	assert.EqualValues(t, 3, b[chartBuckets-1].Skipped)
	total := int64(0)
	for _, q := range b {
		total += q.Polls
	}
	assert.EqualValues(t, 7, total, "the rollup older than a day is not counted")
}

// A connector's page, rendered on the server: its next due time, the four
// charts of its last 24 hours drawn from the rollups, a link back to the
// list that keeps its filters, and its errors as text.
func TestConnectorPage(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	st, hist := newStores(rdb)
	index := catalog.NewIndex(builtin.Registry(), nil)
	index.Update(catalog.Entry{Ref: catalog.Connector("alerts"), Revision: 1,
		Value: []byte(`{"name": "alerts", "type": "weather-noaa", "interval": "1m", "config": {"area": "CA", "user_agent": "(pollgrid-test, ops@example.com)"}}`)})
	index.SetSynced()
	a := New(nil, st, hist, Options{Connectors: index})
	ctx := context.Background()
	now := time.Now()

	// A day of polls, one every ten minutes; the last hour's fail with an
	// error that holds markup.
	const markup = `upstream answered 502 Bad Gateway: <b>down</b> & <script>alert(1)</script>`
	var reports []*pollgridv1.PollReport
	for started := now.Add(-23 * time.Hour); started.Before(now); started = started.Add(10 * time.Minute) {
		r := &pollgridv1.PollReport{Connector: "alerts", ConnectorType: "weather-noaa", Worker: "w1",
			Outcome: pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, StartedAt: timestamppb.New(started),
			Duration: durationpb.New(200 * time.Millisecond), ItemsFetched: 4, ItemsPublished: 1}
		if now.Sub(started) < time.Hour {
			r.Outcome, r.Error = pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, "poll alerts: "+markup
		}
		reports = append(reports, r)
	}
	for i := 0; i < len(reports); i += 20 {
		require.NoError(t, hist.RecordReports(ctx, reports[i:min(i+20, len(reports))]))
	}
	lease, _, err := st.Acquire(ctx, "alerts", "w1", time.Minute, store.ClaimTrigger)
	require.NoError(t, err)
	require.NoError(t, st.Commit(ctx, lease, store.Commit{Now: now, State: store.State{
		LastPoll: now.Add(-time.Minute), LastSuccess: now.Add(-time.Hour), ConsecutiveFailures: 6, LastError: "poll alerts: " + markup,
		// Backing off: the next due time is minutes away whatever the
		// connector's phase (without it, a fire within the second says "now").
		NotBefore: now.Add(5 * time.Minute), NotBeforeBy: store.WaitBackoff}}))

	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/connectors/alerts?health=failing&query=al&limit=9")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	page := string(body)
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "style-src 'self'")

	assert.Contains(t, page, `href="/?health=failing&amp;query=al"`, "the way back keeps the list's filters, and only those")
	assert.Regexp(t, `id="next-due">in [45]m \(<time datetime="`, page)
	assert.Contains(t, page, "ours, after failed polls", "whose wait it is")
	for _, id := range []string{"chart-polls", "chart-failures", "chart-latency", "chart-items", "poll-chart"} {
		assert.Contains(t, page, `<svg id="`+id+`"`, id)
	}
	successBars := regexp.MustCompile(`<rect class="success"`).FindAllString(page, -1)
	assert.GreaterOrEqual(t, len(successBars), 88, "a bar for each quarter-hour of the day that had a success")
	assert.Contains(t, page, `<rect class="failure"`)
	assert.Contains(t, page, `<rect class="latency-avg"`)
	assert.Contains(t, page, `<rect class="published"`)
	assert.Regexp(t, `<title>\d\d:\d\d–\d\d:\d\d UTC: \d polls \(\d succeeded, \d failed, 0 skipped\)</title>`, page)

	assert.NotContains(t, page, "<b>down</b>", "an error's markup is not markup on the page")
	assert.NotContains(t, page, "<script>alert(1)")
	assert.Contains(t, page, "&lt;b&gt;down&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;", "it is text")
	assert.Equal(t, 1, strings.Count(page, `id="last-error"`))

	resp, err = http.Get(srv.URL + "/connectors/nope?type=feed")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ = io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Contains(t, string(body), `no connector named &#34;nope&#34;`)
	assert.Contains(t, string(body), `href="/?type=feed"`)

	resp, err = http.Get(srv.URL + "/style.css")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/css; charset=utf-8", resp.Header.Get("Content-Type"))
}

// The day's charts drawn from the quarter-hours the history keeps are
// those drawn from every poll's minute, as the page drew them when the
// history kept a day of minutes.
func TestDayChartsFromQuarterHours(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	_, hist := newStores(rdb)
	ctx := context.Background()
	now := time.Now().UTC()
	// A day and an hour of polls every 7 minutes and 13 seconds, a mix of
	// outcomes, durations and items, written in flushes of 20.
	var reports []*pollgridv1.PollReport
	for i, started := 0, now.Add(-25*time.Hour); started.Before(now); i, started = i+1, started.Add(7*time.Minute+13*time.Second) {
		r := &pollgridv1.PollReport{Connector: "alerts", ConnectorType: "weather-noaa", Worker: "w1",
			Outcome: pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, StartedAt: timestamppb.New(started),
			Duration: durationpb.New(time.Duration(100+i%17*40) * time.Millisecond), ItemsFetched: int64(i % 9), ItemsPublished: int64(i % 3)}
		switch i % 11 {
		case 3:
			r.Outcome, r.Error = pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, "503"
		case 7:
			r.Outcome, r.Duration = pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED, durationpb.New(0)
		}
		reports = append(reports, r)
	}
	for i := 0; i < len(reports); i += 20 {
		require.NoError(t, hist.RecordReports(ctx, reports[i:min(i+20, len(reports))]))
	}

	// Each poll's minute, summed in Go: the per-minute rollups of before.
	var minutes []history.Rollup
	for _, r := range reports {
		start := r.GetStartedAt().AsTime().Truncate(time.Minute)
		if start.Before(now.Add(-chartSpan).Truncate(time.Minute)) {
			continue
		}
		m := history.Rollup{Start: start, Width: time.Minute, Polls: 1, ItemsFetched: r.GetItemsFetched(), ItemsPublished: r.GetItemsPublished()}
		switch r.GetOutcome() {
		case pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS:
			m.Successes = 1
		case pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE:
			m.Failures = 1
		default:
			m.Skipped = 1
		}
		if m.Skipped == 0 {
			m.LatencySum, m.LatencyMax = r.GetDuration().AsDuration(), r.GetDuration().AsDuration()
		}
		minutes = append(minutes, m)
	}
	want := quarterHours(minutes, now)

	quarters, err := hist.Rollups(ctx, "alerts", history.PerQuarterHour, now.Add(-chartSpan), now)
	require.NoError(t, err)
	got := quarterHours(quarters, now)
	assert.Equal(t, want, got)
	assert.Equal(t, dayCharts(want), dayCharts(got))
	var polls int64
	for _, b := range got {
		polls += b.Polls
	}
	assert.Greater(t, polls, int64(190), "a day of polls is charted")
}
