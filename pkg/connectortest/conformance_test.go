package connectortest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	weathernoaa "github.com/pollgrid/pollgrid/pkg/connectors/weather-noaa"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// bugs are mistakes a connector author can make; each one must make a
// Conformance check fail.
type bugs struct {
	ioInNew          bool // fetches while building
	acceptsAnything  bool // no validation
	ignoresCtx       bool // requests with context.Background()
	succeedsOn500    bool // treats any status as an empty answer
	dropsStateOn304  bool // keeps the cursor but not the validators on a 304
	panicsOnEmpty    bool // indexes the body
	emptyIsNoItems   bool // an empty body is an empty list
	versionPerPoll   bool // a version that changes on every poll
	notModifiedOn304 bool // reports a 304 as a success with no items, not NotModified
	failsOn304       bool // asks conditionally, then takes the 304 for an error
}

// fakeFactory builds a small, correct connector (unless told otherwise):
// GET {base_url}/items → {"items": [{"id": "...", "version": "..."}]}.
func fakeFactory(b bugs) connector.Factory {
	var polls atomic.Int64
	return func(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
		client := deps.HTTP
		if client == nil {
			client = upstream.NewClient(upstream.Options{Allow: egress.Loopback()})
		}
		var cfg struct {
			BaseURL string `json:"base_url"`
		}
		if b.ioInNew {
			_ = json.Unmarshal(raw, &cfg)
			if resp, err := client.Get(cfg.BaseURL + "/probe"); err == nil {
				resp.Body.Close()
			}
		}
		cfg, err := connector.DecodeConfig[struct {
			BaseURL string `json:"base_url"`
		}](raw)
		if !b.acceptsAnything {
			if err != nil {
				return nil, err
			}
			if cfg.BaseURL == "" {
				return nil, errors.New("config.base_url: required (write the API root, e.g. \"https://example.com\")")
			}
		}
		return connectorFunc(func(ctx context.Context, state connector.State) (connector.Result, error) {
			reqCtx := ctx
			if b.ignoresCtx {
				reqCtx = context.Background()
			}
			req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, cfg.BaseURL+"/items", nil)
			if err != nil {
				return connector.Result{}, err
			}
			upstream.Conditional(req, state)
			resp, err := client.Do(req)
			if err != nil {
				return connector.Result{}, fmt.Errorf("fake items: %w", err)
			}
			defer resp.Body.Close()
			if err := upstream.CheckStatus(resp); err != nil {
				if b.succeedsOn500 {
					return connector.Result{State: state}, nil
				}
				return connector.Result{}, fmt.Errorf("fake items: %w", err)
			}
			if resp.StatusCode == http.StatusNotModified {
				switch {
				case b.failsOn304:
					return connector.Result{}, errors.New("fake items: unexpected status 304")
				case b.dropsStateOn304:
					return connector.Result{NotModified: true, State: connector.State{Cursor: state.Cursor}}, nil
				case b.notModifiedOn304:
					return connector.Result{State: state}, nil
				}
				return connector.Result{NotModified: true, State: state}, nil
			}
			body, err := upstream.ReadBody(resp)
			if err != nil {
				return connector.Result{}, fmt.Errorf("fake items: %w", err)
			}
			if b.panicsOnEmpty {
				_ = body[0]
			}
			if len(body) == 0 && b.emptyIsNoItems {
				return connector.Result{State: state}, nil
			}
			var page struct {
				Items []struct{ ID, Version string }
			}
			if err := upstream.DecodeJSON(body, &page); err != nil {
				return connector.Result{}, fmt.Errorf("fake items: %w", err)
			}
			n := polls.Add(1)
			res := connector.Result{State: upstream.Validators(resp, state)}
			for _, it := range page.Items {
				version := it.Version
				if b.versionPerPoll {
					version = strconv.FormatInt(n, 10)
				}
				data, _ := json.Marshal(map[string]string{"id": it.ID})
				res.Items = append(res.Items, connector.Item{ID: it.ID, Version: version, Data: data})
				res.State.Cursor = max(res.State.Cursor, it.Version)
			}
			return res, nil
		}), nil
	}
}

func fakeSpec(b bugs) Spec {
	return Spec{
		Type:    "fake",
		Factory: fakeFactory(b),
		Config:  func(baseURL string) string { return fmt.Sprintf(`{"base_url": %q}`, baseURL) },
		OK: func(testing.TB) []Route {
			return []Route{GET("/items", Response{
				Header: http.Header{"Content-Type": {"application/json"}, "Etag": {`"e1"`}, "Last-Modified": {"Mon, 02 Jan 2006 15:04:05 GMT"}},
				Body:   []byte(`{"items": [{"id": "a", "version": "2024-01-01"}, {"id": "b", "version": "2024-01-02"}]}`),
			})}
		},
		BadConfigs: []string{`{}`, `{"base_url": "http://127.0.0.1:9", "unknown": true}`, `[]`},
	}
}

func TestConformancePassesACorrectConnector(t *testing.T) {
	Conformance(t, fakeSpec(bugs{}))
}

func TestConformancePassesWeatherNOAA(t *testing.T) {
	Conformance(t, Spec{
		Type:    weathernoaa.TypeName,
		Factory: weathernoaa.New,
		Config: func(baseURL string) string {
			return noaaConfig(baseURL, `"point": "33.25,-112.30"`)
		},
		OK: func(t testing.TB) []Route {
			return []Route{GET("/alerts/active?point=33.25,-112.30", Load(t, "alerts_active_point_2024.json"))}
		},
		BadConfigs: []string{`{"point": "33.25,-112.30"}`, `{"area": "ca", "user_agent": "x"}`},
	})
}

// TestConformanceCatchesBugs shows that each check fails on the bug it is
// there for, and that the other checks do not blame a connector for it.
func TestConformanceCatchesBugs(t *testing.T) {
	tests := []struct {
		name      string
		bugs      bugs
		failCheck string
		want      string
	}{
		{"I/O while building", bugs{ioInNew: true}, "a valid config is accepted without I/O", "made HTTP requests while building"},
		{"I/O while building a bad config", bugs{ioInNew: true}, "bad configs are rejected without I/O", "made 1 HTTP request(s) while building"},
		{"no validation", bugs{acceptsAnything: true}, "bad configs are rejected without I/O", "fake accepted the bad config {}"},
		{"context ignored", bugs{ignoresCtx: true}, "a cancelled context stops the poll", "Poll did not return within 2s"},
		{"500 is a success", bugs{succeedsOn500: true}, "a 500 fails the poll and moves no cursor", "a 500 must fail the poll"},
		{"304 loses the validators", bugs{dropsStateOn304: true}, "a 304 to a conditional request is NotModified", "ETag changed"},
		{"304 is a success", bugs{notModifiedOn304: true}, "a 304 to a conditional request is NotModified", "a 304 must end the poll as NotModified"},
		{"304 is an error", bugs{failsOn304: true}, "a 304 to a conditional request is NotModified",
			`a 304 to a conditional request (If-None-Match "\"e1\"", If-Modified-Since "Mon, 02 Jan 2006 15:04:05 GMT") must end the poll as NotModified, not fail it: poll test-fake: fake items: unexpected status 304`},
		{"panic on an empty body", bugs{panicsOnEmpty: true}, "an empty 200 fails the poll", "fake panicked in Poll: runtime error: index out of range"},
		{"empty body is no items", bugs{emptyIsNoItems: true}, "an empty 200 fails the poll", "an empty 200 body must fail the poll"},
		{"version changes every poll", bugs{versionPerPoll: true}, "a good poll publishes and a repeat publishes nothing", "want none: a@2 (updated), b@2 (updated)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := fakeSpec(tt.bugs)
			var found bool
			for _, c := range checks {
				if c.name != tt.failCheck {
					continue
				}
				found = true
				rec := runWith(t, func(rt testing.TB) { c.run(rt, spec) })
				require.True(t, rec.Failed(), "check %q passed a connector with this bug", c.name)
				assert.Contains(t, rec.messages(), tt.want)
			}
			require.True(t, found, "no check named %q", tt.failCheck)
		})
	}
}

func TestConformanceRejectsIncompleteSpec(t *testing.T) {
	err := Spec{Type: "fake"}.validate()
	require.Error(t, err)
	for _, field := range []string{"Factory", "Config", "OK", "BadConfigs"} {
		assert.Contains(t, err.Error(), field)
	}
	assert.NoError(t, fakeSpec(bugs{}).validate())
	assert.NoError(t, offlineSpec(offlineBugs{}).validate(), "an Offline type needs no OK routes")

	withRoutes := offlineSpec(offlineBugs{})
	withRoutes.OK = fakeSpec(bugs{}).OK
	assert.ErrorContains(t, withRoutes.validate(), "OK is set for an Offline type")
}

// offlineBugs are mistakes the author of a type with no upstream can make.
type offlineBugs struct {
	ignoresCtx  bool // polls whatever its context says
	requests    bool // reaches out although it says it is offline
	versionTick bool // a version that changes on every poll
}

// offlineFactory builds a small, correct connector with no upstream
// (unless told otherwise): two items, made up.
func offlineFactory(b offlineBugs) connector.Factory {
	var polls atomic.Int64
	return func(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
		cfg, err := connector.DecodeConfig[struct {
			BaseURL string `json:"base_url"`
		}](raw)
		if err != nil {
			return nil, err
		}
		return connectorFunc(func(ctx context.Context, state connector.State) (connector.Result, error) {
			if err := ctx.Err(); err != nil && !b.ignoresCtx {
				return connector.Result{}, fmt.Errorf("offline: %w", err)
			}
			if b.requests {
				if resp, err := deps.HTTP.Get(cfg.BaseURL + "/items"); err == nil {
					resp.Body.Close()
				}
			}
			version := "1"
			if b.versionTick {
				version = strconv.FormatInt(polls.Add(1), 10)
			}
			res := connector.Result{State: state}
			for _, id := range []string{"a", "b"} {
				data, _ := json.Marshal(map[string]string{"id": id})
				res.Items = append(res.Items, connector.Item{ID: id, Version: version, Data: data})
			}
			return res, nil
		}), nil
	}
}

func offlineSpec(b offlineBugs) Spec {
	return Spec{
		Type:       "offline",
		Factory:    offlineFactory(b),
		Config:     func(baseURL string) string { return fmt.Sprintf(`{"base_url": %q}`, baseURL) },
		BadConfigs: []string{`{"unknown": true}`, `[]`},
		Offline:    true,
	}
}

func TestConformancePassesACorrectOfflineConnector(t *testing.T) {
	Conformance(t, offlineSpec(offlineBugs{}))
}

// TestConformanceCatchesOfflineBugs: the checks an Offline type runs fail
// on its bugs, and the checks of upstream answers are skipped, not passed.
func TestConformanceCatchesOfflineBugs(t *testing.T) {
	tests := []struct {
		name      string
		bugs      offlineBugs
		failCheck string
		want      string
	}{
		{"context ignored", offlineBugs{ignoresCtx: true}, "a cancelled context stops the poll",
			"a poll whose context is cancelled must fail with context.Canceled"},
		{"a request", offlineBugs{requests: true}, "a good poll publishes and a repeat publishes nothing",
			"no route for GET /items (the server has no routes: this test expects no request)"},
		{"version changes every poll", offlineBugs{versionTick: true}, "a good poll publishes and a repeat publishes nothing",
			"want none: a@2 (updated), b@2 (updated)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := offlineSpec(tt.bugs)
			i := slices.IndexFunc(checks, func(c check) bool { return c.name == tt.failCheck })
			require.GreaterOrEqual(t, i, 0, "no check named %q", tt.failCheck)
			rec := runWith(t, func(rt testing.TB) { checks[i].run(rt, spec) })
			require.True(t, rec.Failed(), "check %q passed a connector with this bug", tt.failCheck)
			assert.Contains(t, rec.messages(), tt.want)
		})
	}

	var upstreamChecks []string
	for _, c := range checks {
		if c.upstream {
			upstreamChecks = append(upstreamChecks, c.name)
		}
	}
	assert.ElementsMatch(t, []string{"a 500 fails the poll and moves no cursor", "a 304 to a conditional request is NotModified",
		"an empty 200 fails the poll"}, upstreamChecks, "the checks an Offline type skips")
}
