package connectortest

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

// cancelWait is how long CancelPoll waits for a request to arrive, and then
// for the cancelled poll to return.
const cancelWait = 10 * time.Second

// HangingServer is a test server that holds every request; see Hang.
type HangingServer struct {
	*Server

	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

// Hang starts a server for cancellation tests. It answers every request by
// running start, when not nil (to send headers and part of a body, flushed,
// for a poll cancelled while it reads), and then holds the request until the
// client gives up (the request's context ends), Release is called, or the
// test ends. It records requests as Replay does.
func Hang(t testing.TB, start http.HandlerFunc) *HangingServer {
	t.Helper()
	h := &HangingServer{arrived: make(chan struct{}, 1), release: make(chan struct{})}
	h.Server = Serve(t, func(w http.ResponseWriter, r *http.Request) {
		if start != nil {
			start(w, r)
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
		select {
		case h.arrived <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-h.release:
		}
	})
	t.Cleanup(h.Release) // runs before the server closes, which waits for handlers
	return h
}

// Arrived receives when a request is being held (once, however many came).
func (h *HangingServer) Arrived() <-chan struct{} { return h.arrived }

// Release lets every held request, and every later one, end. It may be
// called more than once.
func (h *HangingServer) Release() { h.once.Do(func() { close(h.release) }) }

// CancelPoll polls c from an empty state, cancels the poll's context once
// the server holds its request, and returns the poll's error, for the test to
// check (context.Canceled in its chain, the connector's prefix). The test
// fails when the poll ends before its request arrives, when no request
// arrives within 10s, or when the poll has not returned 10s after the cancel.
func (h *HangingServer) CancelPoll(t testing.TB, c connector.Connector) error {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Poll(ctx, connector.State{})
		done <- err
	}()

	select {
	case <-h.arrived:
	case err := <-done:
		t.Fatalf("the poll ended before its request reached the server: %v", err)
	case <-time.After(cancelWait):
		t.Fatal("the request never reached the server")
	}
	cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(cancelWait):
		t.Fatal("Poll did not return after its context was cancelled")
		return nil
	}
}
