package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

func TestFetch(t *testing.T) {
	const etag = `"v1"`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/items":
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Type", "application/geo+json")
			_, _ = io.WriteString(w, `{"ok":`+r.Header.Get("X-Echo")+`}`)
		case "/moved":
			http.Redirect(w, r, "/items", http.StatusFound)
		case "/unasked-304":
			w.WriteHeader(http.StatusNotModified)
		case "/search":
			body, _ := io.ReadAll(r.Body)
			_, _ = w.Write(body)
		default:
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errorMessages":["You are not logged in."]}`)
		}
	}))
	t.Cleanup(srv.Close)
	c := local(Options{})

	t.Run("a 200 and its validators", func(t *testing.T) {
		a, err := Fetch(t.Context(), c, Request{URL: srv.URL + "/items", Header: http.Header{"X-Echo": {"true"}}})
		require.NoError(t, err)
		assert.Equal(t, `{"ok":true}`, string(a.Body))
		assert.False(t, a.NotModified)
		assert.Equal(t, connector.State{Cursor: "c", ETag: etag}, a.State(connector.State{Cursor: "c", LastModified: "old"}))
		assert.Equal(t, ` (Content-Type "application/geo+json")`, a.ContentType())
	})
	t.Run("a conditional request's 304", func(t *testing.T) {
		a, err := Fetch(t.Context(), c, Request{URL: srv.URL + "/items", Validators: connector.State{ETag: etag}})
		require.NoError(t, err)
		assert.True(t, a.NotModified)
		assert.Empty(t, a.Body)
	})
	t.Run("a 304 nobody asked for", func(t *testing.T) {
		_, err := Fetch(t.Context(), c, Request{URL: srv.URL + "/unasked-304"})
		assert.ErrorIs(t, err, ErrNotModifiedUnasked)
	})
	t.Run("the URL after redirects", func(t *testing.T) {
		a, err := Fetch(t.Context(), c, Request{URL: srv.URL + "/moved", Header: http.Header{"X-Echo": {"1"}}})
		require.NoError(t, err)
		assert.Equal(t, "/items", a.URL.Path)
	})
	t.Run("a POST body", func(t *testing.T) {
		a, err := Fetch(t.Context(), c, Request{Method: http.MethodPost, URL: srv.URL + "/search", Body: []byte(`{"jql":"x"}`)})
		require.NoError(t, err)
		assert.Equal(t, `{"jql":"x"}`, string(a.Body))
	})
	t.Run("a status error, explained", func(t *testing.T) {
		_, err := Fetch(t.Context(), c, Request{URL: srv.URL + "/private", Explain: func(e *StatusError) {
			assert.Equal(t, "0", e.Header.Get("X-RateLimit-Remaining"))
			e.Message, e.Hint = "You are not logged in.", "check config.api_token"
		}})
		assert.EqualError(t, err, "upstream answered 401 Unauthorized: You are not logged in. (check config.api_token)")
		se, ok := errors.AsType[*StatusError](err)
		require.True(t, ok)
		assert.JSONEq(t, `{"errorMessages":["You are not logged in."]}`, string(se.Body))
	})
	t.Run("a transport error never shows a query value", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		_, err := Fetch(t.Context(), c, Request{URL: dead.URL + "/x?api_key=SECRET"})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "/x?api_key=xxxxx")
		assert.NotContains(t, err.Error(), "SECRET")
	})
	t.Run("a cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := Fetch(ctx, c, Request{URL: srv.URL + "/items"})
		assert.ErrorIs(t, err, context.Canceled)
	})
}
