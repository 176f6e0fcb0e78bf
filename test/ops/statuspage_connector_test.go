package ops

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/history"
	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
	"github.com/pollgrid/pollgrid/test/harness"
)

// maintenancePage is a proxy's error page: markup, a script, and the words
// that matter in the middle.
const maintenancePage = `<!DOCTYPE html><html><head><title>503 Service Unavailable</title>
<style>body { font-family: sans-serif }</style><script>document.write("<b>tracking</b>")</script></head>
<body><h1>Service Unavailable</h1><p>Down for <b>maintenance</b> until 14:00 UTC &amp; back soon.</p>
<footer><a href="/status">status</a> · <a href="/help">help</a></footer></body></html>`

// A connector's page in a real browser: opened from a filtered list, it
// shows when the connector is due next, its last 24 hours charted from the
// rollups, and its errors as text (an upstream's HTML page as its words);
// its link back returns to the list as it was filtered.
func TestStatusPageConnectorPage(t *testing.T) {
	good := harness.NewUpstream(t, fixtureBody(t))
	down := harness.NewUpstream(t, fixtureBody(t))
	down.Set(http.StatusServiceUnavailable, []byte(maintenancePage))
	s := startStack(t, nil, connector{name: "az-alerts", interval: "1h", upstream: good},
		connector{name: "broken-feed", interval: "2s", upstream: down})
	seedDay(t, s, "az-alerts")
	// The page is drawn once on the server: wait for the reports it draws.
	require.Eventually(t, func() bool {
		return len(s.status("broken-feed").Recent) > 0 && len(s.status("az-alerts").Recent) > 0
	}, 30*time.Second, 50*time.Millisecond)
	ctx := browser(t)
	base := s.aggregator.HTTP

	within(t, ctx, 30*time.Second, "the list, filtered by its address",
		chromedp.Navigate(base+"/?health=failing"),
		chromedp.WaitVisible(css(`tr[data-name="broken-feed"]`)),
	)
	assert.Equal(t, 1, read(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#rows tr[data-name]").length`)), "only the failing one")
	assert.Equal(t, "failing", read(t, ctx, chromedp.Value(css(`#health`))))
	cell := read(t, ctx, chromedp.Text(css(`tr[data-name="broken-feed"] td.err`)))
	assert.Contains(t, cell, `upstream answered 503 Service Unavailable: an HTML page: "Down for maintenance until 14:00 UTC & back soon. status · help"`,
		"the page's words, not its markup")
	assert.Zero(t, read(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#rows td.err *").length`)), "an error cell holds text only")
	docsScreenshot(t, ctx, "status-list-failing.png")

	within(t, ctx, 30*time.Second, "the connector's page, from its row",
		chromedp.Click(css(`tr[data-name="broken-feed"] a`)),
		chromedp.WaitVisible(css(`#chart-polls rect.failure`)),
	)
	assert.Equal(t, base+"/connectors/broken-feed?health=failing", read(t, ctx, chromedp.Location()))
	assert.Regexp(t, `^(in \d+s|now) \(`, read(t, ctx, chromedp.Text(css(`#next-due`))), "when it polls next")
	lastError := read(t, ctx, chromedp.Text(css(`#last-error`)))
	assert.Contains(t, lastError, `an HTML page: "Down for maintenance`)
	assert.NotContains(t, lastError, "<")
	assert.Zero(t, read(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#last-error *, #recent td.err *").length`)),
		"errors are text, whatever they hold")
	assert.Positive(t, read(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#poll-chart rect.poll-failure").length`)))
	assert.Positive(t, read(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#chart-failures rect.failure").length`)))
	docsScreenshot(t, ctx, "status-connector-failing.png")

	within(t, ctx, 30*time.Second, "back to the list as it was filtered",
		chromedp.Click(css(`#back`)),
		chromedp.WaitVisible(css(`tr[data-name="broken-feed"]`)),
	)
	assert.Equal(t, base+"/?health=failing", read(t, ctx, chromedp.Location()))
	assert.Equal(t, "failing", read(t, ctx, chromedp.Value(css(`#health`))))
	assert.Equal(t, 1, read(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#rows tr[data-name]").length`)))

	within(t, ctx, 30*time.Second, "a day of polls, charted",
		chromedp.Navigate(base+"/connectors/az-alerts"),
		chromedp.WaitVisible(css(`#chart-polls rect.success`)),
	)
	count := func(selector string) int {
		return read(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("`+selector+`").length`))
	}
	// seedDay reports a poll every 10 minutes for 23 hours, those of one
	// hour failed: each of its 92 quarter-hours has a bar, green but for
	// the 4 or 5 of that hour.
	assert.GreaterOrEqual(t, count("#chart-polls rect.success"), 86)
	assert.GreaterOrEqual(t, count("#chart-failures rect.failure"), 4, "the hour it failed")
	assert.LessOrEqual(t, count("#chart-failures rect.failure"), 5)
	assert.GreaterOrEqual(t, count("#chart-latency rect.latency-avg"), 91)
	assert.GreaterOrEqual(t, count("#chart-items rect.published"), 86)
	title := read(t, ctx, chromedp.TextContent(css(`#chart-polls rect.failure title`)))
	assert.Regexp(t, `^\d\d:\d\d–\d\d:\d\d UTC: \d+ polls \(\d+ succeeded, \d+ failed, 0 skipped\)$`, title, "each bar says what it counts")
	assert.Equal(t, base+"/?type=weather-noaa", read(t, ctx, chromedp.JavascriptAttribute[string](css(`#facts a`), "href")),
		"its type links to the list of that type")
	docsScreenshot(t, ctx, "status-connector.png")
}

// seedDay records a day of reports for name as the aggregator would have:
// a poll every 10 minutes for 23 hours, an hour of them failing 8 hours ago.
func seedDay(t *testing.T, s *stack, name string) {
	hist := history.New(s.redis.Client(t), store.NewKeys(""))
	now := time.Now()
	var reports []*pollgridv1.PollReport
	for started := now.Add(-23 * time.Hour); started.Before(now.Add(-10 * time.Minute)); started = started.Add(10 * time.Minute) {
		ago := now.Sub(started)
		r := &pollgridv1.PollReport{Connector: name, ConnectorType: "weather-noaa", Worker: "w1",
			Outcome: pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, StartedAt: timestamppb.New(started),
			Duration:     durationpb.New(150*time.Millisecond + time.Duration(ago.Hours())*10*time.Millisecond),
			ItemsFetched: 2, ItemsPublished: 1}
		if ago > 8*time.Hour && ago <= 9*time.Hour {
			r.Outcome, r.Error, r.ItemsFetched, r.ItemsPublished = pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, "poll "+name+": upstream answered 502 Bad Gateway", 0, 0
			r.Duration = durationpb.New(2 * time.Second)
		}
		reports = append(reports, r)
	}
	// In order, a batch at a time, as the aggregator flushes them.
	for i := 0; i < len(reports); i += 12 {
		require.NoError(t, hist.RecordReports(context.Background(), reports[i:min(i+12, len(reports))]))
	}
}

// docsScreenshot saves a screenshot as screenshot does and, when
// POLLGRID_DOCS_IMAGES names a folder (docs/operate.md: the status page),
// a small copy there for the docs: 64 grey levels and colours are plenty
// for a page of text, bars and badges.
func docsScreenshot(t *testing.T, ctx context.Context, name string) {
	screenshot(t, ctx, name)
	dir := os.Getenv("POLLGRID_DOCS_IMAGES")
	if dir == "" {
		return
	}
	shot, err := png.Decode(bytes.NewReader(read(t, ctx, chromedp.FullScreenshot(100))))
	require.NoError(t, err)
	small := image.NewPaletted(shot.Bounds(), pagePalette())
	draw.Draw(small, small.Rect, shot, shot.Bounds().Min, draw.Src)
	var out bytes.Buffer
	require.NoError(t, (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&out, small))
	require.NoError(t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, out.Bytes(), 0o644))
	t.Logf("docs image: %s (%d KB)", path, out.Len()/1024)
}

// pagePalette is the status page's colours (style.css) and greys between
// white and its text, for images without dithering noise.
func pagePalette() color.Palette {
	var p color.Palette
	for _, hex := range strings.Fields(`1a7f37 cf222e bc4c00 0969da 6e7781 8c959f d0d7de 1f2328 57606a afb8c1
		f6f8fa fbfcfd eaeef2 fff8f8 ffcecb ffffff 000000`) {
		var c color.RGBA
		c.A = 0xff
		for i, dst := range []*uint8{&c.R, &c.G, &c.B} {
			var v uint8
			for _, d := range hex[2*i : 2*i+2] {
				v = v<<4 | uint8(strings.IndexRune("0123456789abcdef", d))
			}
			*dst = v
		}
		p = append(p, c)
	}
	for i := range 48 {
		v := uint8(i * 255 / 47)
		p = append(p, color.RGBA{v, v, v, 0xff})
	}
	// Antialiased edges of the coloured badges and bars.
	for _, base := range p[:6] {
		b := base.(color.RGBA)
		for _, f := range []uint8{64, 128, 192} {
			mix := func(c uint8) uint8 { return uint8((int(c)*int(255-f) + 255*int(f)) / 255) }
			p = append(p, color.RGBA{mix(b.R), mix(b.G), mix(b.B), 0xff})
		}
	}
	return p
}
