package ops

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/services/aggregator/aggregatord"
	"github.com/pollgrid/pollgrid/test/harness"
)

// artifacts is where the browser tests leave their screenshots (git-ignored).
const artifacts = "../artifacts"

// browser starts Debian's headless Chromium with the flags this machine
// needs (no sandbox as root, no background networking: the network is
// closed) and returns a chromedp context bound to it. Without chromium the
// test is skipped, unless POLLGRID_REQUIRE_BROWSER is set (make test sets
// it, after installing chromium): then it fails.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("POLLGRID_REQUIRE_BROWSER") != "" {
			t.Fatalf("chromium is not installed: run `make chromium` (Debian's chromium package)")
		}
		t.Skip("chromium is not installed: `make chromium` installs it (make test does)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	return ctx
}

// within bounds browser steps: a page that never shows what we wait for
// fails the test instead of hanging it.
func within(t *testing.T, ctx context.Context, d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	require.NoError(t, chromedp.Do(c, steps...), what)
}

// read runs one browser action that returns a value.
func read[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, a)
	require.NoError(t, err)
	return v
}

type css = chromedp.CSS

func screenshot(t *testing.T, ctx context.Context, name string) {
	png := read(t, ctx, chromedp.FullScreenshot(100))
	require.NoError(t, os.MkdirAll(artifacts, 0o755))
	path := filepath.Join(artifacts, name)
	require.NoError(t, os.WriteFile(path, png, 0o644))
	abs, _ := filepath.Abs(path)
	t.Logf("screenshot: %s", abs)
}

// The status page in a real browser: a failing connector shows failing and
// first, a pause made with pollctl shows on the page by itself (it
// refreshes), the name filter works, and a connector's recent polls chart.
func TestStatusPageShowsFailingAndPausedConnectors(t *testing.T) {
	good := harness.NewUpstream(t, fixtureBody(t))
	bad := harness.NewUpstream(t, fixtureBody(t))
	bad.Set(http.StatusBadGateway, []byte(`{"title": "Bad Gateway", "detail": "the NWS is down"}`))
	s := startStack(t, nil, connector{name: "az-alerts", interval: "2s", upstream: good},
		connector{name: "broken-feed", interval: "2s", upstream: bad})
	require.Eventually(t, func() bool {
		return s.status("broken-feed").ConsecutiveFailures > 0 && len(s.status("az-alerts").Recent) > 0
	}, 30*time.Second, 50*time.Millisecond)
	ctx := browser(t)

	within(t, ctx, 30*time.Second, "the page lists the failing connector as failing",
		chromedp.Navigate(s.aggregator.HTTP+"/"),
		chromedp.WaitVisible(css(`tr[data-name="broken-feed"][data-health="failing"]`)),
		chromedp.WaitVisible(css(`tr[data-name="az-alerts"][data-health="ok"]`)),
	)
	first := read(t, ctx, chromedp.AttributeValue(css(`#rows tr:first-child`), "data-name"))
	assert.Equal(t, "broken-feed", first.Value, "failing connectors come first")
	assert.Contains(t, read(t, ctx, chromedp.Text(css(`#rows`))), "502 Bad Gateway")

	code, out, stderr := pollctl(t, map[string]string{"NATS_URL": s.env["NATS_URL"]}, "pause", "az-alerts", "--by", "browser-test")
	require.Equal(t, 0, code, out+stderr)
	within(t, ctx, 30*time.Second, "the pause shows on the page without a reload",
		chromedp.WaitVisible(css(`tr[data-name="az-alerts"][data-health="paused"]`)))
	assert.Contains(t, read(t, ctx, chromedp.Text(css(`tr[data-name="az-alerts"] td.err`))), "paused by browser-test")

	within(t, ctx, 30*time.Second, "the name filter keeps the matching connector",
		chromedp.SendKeys(css(`#query`), "broken"),
		chromedp.WaitNotPresent(css(`tr[data-name="az-alerts"]`)),
	)
	assert.Equal(t, 1, read(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#rows tr[data-name]").length`)))

	within(t, ctx, 30*time.Second, "a connector's recent polls chart",
		chromedp.Click(css(`tr[data-name="broken-feed"]`)),
		chromedp.WaitVisible(css(`#poll-chart rect.poll-failure`)),
	)
	assert.Positive(t, read(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#poll-chart rect").length`)))
	screenshot(t, ctx, "status-page.png")
}

// At 10,000 connectors the page shows a page of 100 and pages through the
// rest; the filter finds one among them.
func TestStatusPageAtTenThousandConnectors(t *testing.T) {
	const n = 10_000
	var entries []string
	for i := range n {
		entries = append(entries, fmt.Sprintf(`{"name": "conn-%05d", "type": "weather-noaa", "interval": "1h",
			"config": {"area": "AZ", "user_agent": "(pollgrid ops test, test@example.com)"}}`, i))
	}
	ns := harness.NATS(t)
	agg := harness.Start(t, aggregatord.Service, map[string]string{
		"NATS_URL": ns.ClientURL(), "REDIS_URL": redistest.Start(t).URL(), "LOG_LEVEL": "warn",
		"CONNECTORS_FILE": harness.WriteFile(t, "connectors.json", `{"connectors": [`+strings.Join(entries, ",")+`]}`),
	})
	ctx := browser(t)

	within(t, ctx, 60*time.Second, "the first page",
		chromedp.Navigate(agg.HTTP+"/"),
		chromedp.WaitVisible(css(`tr[data-name="conn-00000"]`)),
	)
	assert.Equal(t, "1–100 of 10000", read(t, ctx, chromedp.Text(css(`#range`))))
	assert.Equal(t, 100, read(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#rows tr[data-name]").length`)),
		"one page in the DOM, not 10,000 rows")
	within(t, ctx, 60*time.Second, "the next page",
		chromedp.Click(css(`#next`)),
		chromedp.WaitVisible(css(`tr[data-name="conn-00100"]`)),
	)
	assert.Equal(t, "101–200 of 10000", read(t, ctx, chromedp.Text(css(`#range`))))
	within(t, ctx, 60*time.Second, "the filter",
		chromedp.SendKeys(css(`#query`), "conn-09999"),
		chromedp.WaitVisible(css(`tr[data-name="conn-09999"]`)),
		chromedp.WaitNotPresent(css(`tr[data-name="conn-00100"]`)),
	)
	assert.Equal(t, "1–1 of 1", read(t, ctx, chromedp.Text(css(`#range`))))
	screenshot(t, ctx, "status-page-10k.png")
}
