package connectortest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

// getter is a connector that GETs url once.
func getter(url string) connector.Connector {
	return connectorFunc(func(ctx context.Context, _ connector.State) (connector.Result, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return connector.Result{}, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return connector.Result{}, fmt.Errorf("getter: %w", err)
		}
		defer resp.Body.Close()
		return connector.Result{}, nil
	})
}

// reader is a connector that GETs url once and reads the whole body.
func reader(url string) connector.Connector {
	return connectorFunc(func(ctx context.Context, _ connector.State) (connector.Result, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return connector.Result{}, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return connector.Result{}, fmt.Errorf("reader: %w", err)
		}
		defer resp.Body.Close()
		if _, err := io.ReadAll(resp.Body); err != nil {
			return connector.Result{}, fmt.Errorf("reader: %w", err)
		}
		return connector.Result{}, nil
	})
}

func TestCancelPollReturnsTheCancelledError(t *testing.T) {
	srv := Hang(t, nil)
	err := srv.CancelPoll(t, getter(srv.URL+"/x"))
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	require.Len(t, srv.Requests(), 1)
	assert.Equal(t, "/x", srv.Requests()[0].URL.Path)
}

func TestHangRunsStartBeforeHolding(t *testing.T) {
	started := make(chan struct{})
	srv := Hang(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("part"))
		close(started)
	})
	err := srv.CancelPoll(t, connectorFunc(func(ctx context.Context, _ connector.State) (connector.Result, error) {
		// Read the whole body, as a connector does: the headers and "part"
		// arrive at once, and the read then waits on the held request
		// until the cancel. (Returning once the headers are in would end
		// the poll before the server reports the request as held.)
		result, err := reader(srv.URL).Poll(ctx, connector.State{})
		select {
		case <-started:
		default:
			t.Error("the request was held before start ran")
		}
		return result, err
	}))
	assert.Error(t, err)
}

func TestCancelPollFailsWhenThePollEndsFirst(t *testing.T) {
	srv := Hang(t, nil)
	quits := connectorFunc(func(context.Context, connector.State) (connector.Result, error) {
		return connector.Result{}, errors.New("gave up before asking")
	})
	rec := runWith(t, func(rt testing.TB) { _ = srv.CancelPoll(rt, quits) })
	assert.Contains(t, rec.messages(), "the poll ended before its request reached the server: gave up before asking")
}

func TestConfigError(t *testing.T) {
	factory := fakeFactory(bugs{})
	t.Run("a rejected config passes and gives the error", func(t *testing.T) {
		rec := runWith(t, func(rt testing.TB) {
			err := ConfigError(rt, factory, `{}`, "config.base_url: required")
			assert.ErrorContains(t, err, "write the API root")
		})
		assert.False(t, rec.Failed(), rec.messages())
	})
	t.Run("an accepted config fails", func(t *testing.T) {
		rec := runWith(t, func(rt testing.TB) { ConfigError(rt, factory, `{"base_url": "http://x"}`) })
		assert.Contains(t, rec.messages(), `the factory accepted {"base_url": "http://x"}`)
	})
	t.Run("an error without the wanted text fails", func(t *testing.T) {
		rec := runWith(t, func(rt testing.TB) { ConfigError(rt, factory, `{}`, "config.url") })
		assert.Contains(t, rec.messages(), `"config.url"`)
	})
}

func TestItemIDsAndVersions(t *testing.T) {
	items := []connector.Item{{ID: "a", Version: "1"}, {ID: "b", Version: "2"}}
	assert.Equal(t, []string{"a", "b"}, ItemIDs(items))
	assert.Equal(t, []string{"1", "2"}, ItemVersions(items))
	assert.Equal(t, []string{}, ItemIDs(nil), "none is an empty list, as a test's want is written")
	assert.Equal(t, []string{}, ItemVersions(nil))
}
