package aggregator

import (
	"fmt"
	"time"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/history"
)

// The connector page's charts are SVG drawn here, on the server, from the
// rollups: no script, no library, nothing fetched by the browser (the page
// works offline and under a strict Content-Security-Policy).

// Chart geometry, in SVG user units; the page stretches the width.
const (
	chartWidth   = 960
	chartHeight  = 100
	chartBuckets = 96               // 24 hours of ...
	chartBucket  = 15 * time.Minute // ... quarter-hours
	chartSpan    = chartBuckets * chartBucket
)

// Colours of the bars, by what they mean: those of the page's stylesheet
// (its health badges and legend swatches).
const (
	colourSuccess    = "#1a7f37"
	colourFailure    = "#cf222e"
	colourSkipped    = "#8c959f"
	colourLatency    = "#57606a"
	colourLatencyMax = "#afb8c1"
	colourPublished  = "#0969da"
)

// bucket sums the rollups of one quarter-hour.
type bucket = history.Rollup

// quarterHours sums rollups (per quarter-hour, as the history keeps them
// for a day; finer ones would do too) into the chartBuckets quarter-hours
// that end with the one holding now, oldest first.
func quarterHours(rollups []history.Rollup, now time.Time) []bucket {
	end := now.Truncate(chartBucket).Add(chartBucket)
	start := end.Add(-chartSpan)
	out := make([]bucket, chartBuckets)
	for i := range out {
		out[i].Start, out[i].Width = start.Add(time.Duration(i)*chartBucket), chartBucket
	}
	for _, r := range rollups {
		if r.Start.Before(start) || !r.Start.Before(end) {
			continue
		}
		out[int(r.Start.Sub(start)/chartBucket)].Add(r)
	}
	return out
}

// chart is one SVG bar chart as the template draws it.
type chart struct {
	// ID is the svg element's id; Title says what it shows; Max labels
	// the top of its scale; Empty says why it has no bar, if it has none.
	ID, Title, Max, Empty string
	Bars                  []bar
	// Legend names the colours.
	Legend []legendEntry
	// Ticks label the time axis under the chart.
	Ticks []string
}

// bar is one rect: its place, size, colour, class and tooltip.
type bar struct {
	X, Y, W, H  float64
	Fill, Class string
	Title       string
}

// legendEntry names a colour; Class is its swatch's (style.css).
type legendEntry struct{ Class, Label string }

// segment is one part of a stacked bar.
type segment struct {
	value  float64
	colour string
	class  string
}

// stacked draws one bar per bucket, its segments stacked from the bottom,
// scaled to the largest bucket's total; title gives each bucket's tooltip.
func stacked(id, title string, buckets []bucket, unit func(float64) string, segments func(bucket) []segment, tip func(bucket) string) chart {
	c := chart{ID: id, Title: title, Ticks: ticks()}
	top := 0.0
	for _, b := range buckets {
		sum := 0.0
		for _, s := range segments(b) {
			sum += s.value
		}
		top = max(top, sum)
	}
	if top == 0 {
		return c
	}
	c.Max = unit(top)
	w := float64(chartWidth) / float64(len(buckets))
	for i, b := range buckets {
		y := float64(chartHeight)
		for _, s := range segments(b) {
			if s.value <= 0 {
				continue
			}
			h := max(1, s.value/top*(chartHeight-2))
			y -= h
			c.Bars = append(c.Bars, bar{X: float64(i)*w + 1, Y: y, W: max(1, w-2), H: h, Fill: s.colour, Class: s.class, Title: tip(b)})
		}
	}
	return c
}

// dayCharts are the connector page's four charts of the last 24 hours:
// polls by outcome, failures, latency and items, per quarter-hour.
func dayCharts(buckets []bucket) []chart {
	count := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	span := func(b bucket) string {
		return b.Start.UTC().Format("15:04") + "–" + b.Start.Add(chartBucket).UTC().Format("15:04") + " UTC"
	}
	polls := stacked("chart-polls", "polls per quarter-hour, by outcome", buckets, count,
		func(b bucket) []segment {
			return []segment{{float64(b.Successes), colourSuccess, "success"}, {float64(b.Failures), colourFailure, "failure"}, {float64(b.Skipped), colourSkipped, "skipped"}}
		},
		func(b bucket) string {
			return fmt.Sprintf("%s: %d polls (%d succeeded, %d failed, %d skipped)", span(b), b.Polls, b.Successes, b.Failures, b.Skipped)
		})
	polls.Legend = []legendEntry{{"sw-success", "success"}, {"sw-failure", "failure"}, {"sw-skipped", "skipped"}}
	polls.Empty = "no poll in the last 24 hours"

	failures := stacked("chart-failures", "failed polls per quarter-hour", buckets, count,
		func(b bucket) []segment { return []segment{{float64(b.Failures), colourFailure, "failure"}} },
		func(b bucket) string { return fmt.Sprintf("%s: %d failed of %d polls", span(b), b.Failures, b.Polls) })
	failures.Empty = "no failure in the last 24 hours"

	latency := stacked("chart-latency", "poll duration per quarter-hour: average, and up to the longest", buckets,
		func(v float64) string { return formatSeconds(v) },
		func(b bucket) []segment {
			avg := b.LatencyAvg().Seconds()
			return []segment{{avg, colourLatency, "latency-avg"}, {b.LatencyMax.Seconds() - avg, colourLatencyMax, "latency-max"}}
		},
		func(b bucket) string {
			return fmt.Sprintf("%s: average %s, longest %s over %d polls that ran", span(b),
				formatSeconds(b.LatencyAvg().Seconds()), formatSeconds(b.LatencyMax.Seconds()), b.Successes+b.Failures)
		})
	latency.Legend = []legendEntry{{"sw-latency-avg", "average"}, {"sw-latency-max", "up to the longest"}}
	latency.Empty = "no poll ran in the last 24 hours"

	items := stacked("chart-items", "items per quarter-hour: published, and the rest of those fetched", buckets, count,
		func(b bucket) []segment {
			return []segment{{float64(b.ItemsPublished), colourPublished, "published"}, {float64(b.ItemsFetched - b.ItemsPublished), colourSkipped, "fetched"}}
		},
		func(b bucket) string {
			return fmt.Sprintf("%s: %d items fetched, %d published (created, updated or deleted)", span(b), b.ItemsFetched, b.ItemsPublished)
		})
	items.Legend = []legendEntry{{"sw-published", "published"}, {"sw-skipped", "fetched, unchanged"}}
	items.Empty = "no item fetched in the last 24 hours"
	return []chart{polls, failures, latency, items}
}

// recentChart draws the latest polls, one bar each, oldest left: height
// for duration, colour for outcome.
func recentChart(polls []admin.Poll) chart {
	title := fmt.Sprintf("the last %d polls: duration, by outcome", len(polls))
	if len(polls) == 1 {
		title = "the last poll: duration, by outcome"
	}
	c := chart{ID: "poll-chart", Title: title, Empty: "no poll reported yet",
		Legend: []legendEntry{{"sw-success", "success"}, {"sw-failure", "failure"}, {"sw-skipped", "skipped"}}}
	top := 0.0
	for _, p := range polls {
		top = max(top, p.DurationSeconds)
	}
	if len(polls) == 0 {
		return c
	}
	c.Max = formatSeconds(top)
	top = max(top, 0.001)
	w := float64(chartWidth) / float64(max(len(polls), 20))
	for i, p := range polls {
		h := max(2, p.DurationSeconds/top*(chartHeight-2))
		colour := colourSuccess
		switch p.Outcome {
		case "failure":
			colour = colourFailure
		case "skipped":
			colour, h = colourSkipped, 4
		}
		tip := fmt.Sprintf("%s UTC: %s in %s", p.StartedAt.UTC().Format(time.DateTime), p.Outcome, formatSeconds(p.DurationSeconds))
		if p.Error != "" {
			tip += ": " + admin.ShortError(p.Error, 200)
		}
		c.Bars = append(c.Bars, bar{X: float64(i)*w + 1, Y: chartHeight - h, W: max(1, w-2), H: h, Fill: colour, Class: "poll-" + p.Outcome, Title: tip})
	}
	return c
}

// ticks label the 24-hour axis, oldest left.
func ticks() []string { return []string{"24h ago", "18h ago", "12h ago", "6h ago", "now"} }

// formatSeconds is a duration as the page shows it: 340ms, 1.25s.
func formatSeconds(v float64) string {
	if v >= 1 {
		return fmt.Sprintf("%.2fs", v)
	}
	return fmt.Sprintf("%dms", int(v*1000))
}
