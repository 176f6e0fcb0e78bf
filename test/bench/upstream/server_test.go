package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/test/bench"
)

func start(t *testing.T, cfg config) (*server, *httptest.Server) {
	t.Helper()
	s := newServer(cfg)
	ts := httptest.NewUnstartedServer(s.handler())
	ts.Config.ConnState = s.connState
	ts.Start()
	t.Cleanup(ts.Close)
	return s, ts
}

func getJSON[T any](t *testing.T, url string) T {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var v T
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	return v
}

type answer struct {
	Items []struct {
		ID      string      `json:"id"`
		Version json.Number `json:"version"`
		Payload string      `json:"payload"`
	} `json:"items"`
}

func TestItemAnswersAPaddedItemWithANewVersionEachTime(t *testing.T) {
	s, ts := start(t, config{Connectors: 3, BodyBytes: 2048})
	var versions []string
	for range 2 {
		resp, err := http.Get(ts.URL + "/items/2")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.InDelta(t, 2048, len(body), 40, "about the size asked for")
		var a answer
		require.NoError(t, json.Unmarshal(body, &a))
		require.Len(t, a.Items, 1)
		assert.Equal(t, "2", a.Items[0].ID)
		versions = append(versions, a.Items[0].Version.String())
	}
	assert.NotEqual(t, versions[0], versions[1])
	assert.Equal(t, int64(1), s.connections.Load(), "a client that reads whole answers keeps one connection")

	resp, err := http.Get(ts.URL + "/items/3")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "only /items/0 to /items/2 exist")

	st := getJSON[bench.UpstreamStats](t, ts.URL+"/stats")
	assert.Equal(t, int64(2), st.Completed)
	assert.Equal(t, versions[1], getJSON[bench.UpstreamVersions](t, ts.URL+"/versions").Last[2])
}

func TestVersionPeriodKeepsTheVersion(t *testing.T) {
	_, ts := start(t, config{Connectors: 1, VersionPeriod: time.Hour})
	var a, b answer
	for _, dst := range []*answer{&a, &b} {
		*dst = getJSON[answer](t, ts.URL+"/items/0")
	}
	assert.Equal(t, a.Items[0].Version, b.Items[0].Version)
	assert.Empty(t, a.Items[0].Payload, "no padding asked for")
}

func TestOverlapsCutsAndPolls(t *testing.T) {
	s, ts := start(t, config{Connectors: 2, Delay: 300 * time.Millisecond})
	before := time.Now()

	// Two requests of connector 0 at once: a double poll.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			resp, err := http.Get(ts.URL + "/items/0")
			if assert.NoError(t, err) {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()

	// A client that gives up on connector 1 mid-answer, then asks again.
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/items/1", nil)
	require.NoError(t, err)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err = http.DefaultClient.Do(req)
	require.Error(t, err)
	require.Eventually(t, func() bool { return s.cutCount.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	cuts := getJSON[[]bench.UpstreamCut](t, ts.URL+"/cuts?since=0")
	require.Len(t, cuts, 1)
	assert.Equal(t, 1, cuts[0].Connector)
	assert.Zero(t, cuts[0].NextNS, "no request of connector 1 since")

	resp, err := http.Get(ts.URL + "/items/1")
	require.NoError(t, err)
	resp.Body.Close()
	cuts = getJSON[[]bench.UpstreamCut](t, ts.URL+"/cuts?since=0")
	require.Len(t, cuts, 1)
	assert.Greater(t, cuts[0].NextNS, cuts[0].AtNS, "the next request comes after the cut")

	st := getJSON[bench.UpstreamStats](t, ts.URL+"/stats")
	assert.Equal(t, int64(1), st.Overlaps)
	assert.Equal(t, int64(4), st.Requests)
	assert.Equal(t, int64(3), st.Completed)

	polls := getJSON[bench.UpstreamPolls](t, ts.URL+"/polls?since="+itoa(before.UnixMilli()))
	require.Len(t, polls.Times, 2)
	assert.Len(t, polls.Times[0], 2)
	assert.Len(t, polls.Times[1], 2)
	polls = getJSON[bench.UpstreamPolls](t, ts.URL+"/polls?since="+itoa(time.Now().Add(time.Hour).UnixMilli()))
	assert.Empty(t, polls.Times[0], "nothing since an hour from now")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
