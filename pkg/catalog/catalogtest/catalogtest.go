// Package catalogtest serves the catalog's admin verbs as a scheduler
// serves them, on an embedded NATS server of its own: for the tests and
// benchmarks of what calls them (pollctl, the admin client).
package catalogtest

import (
	"context"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
	"github.com/pollgrid/pollgrid/pkg/natstest"
)

// Server is a NATS server with the catalog's bucket, an index following
// it and the catalog verbs served over it, as schedulerd serves them.
type Server struct {
	URL     string
	NC      *nats.Conn
	JS      jetstream.JetStream
	Catalog *catalog.Catalog
	stop    func()
	once    sync.Once
}

// Start starts a Server, empty, which Stop (or the end of tb) shuts down.
func Start(tb testing.TB) *Server {
	tb.Helper()
	ns := natstest.Start(tb)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cat, err := catalog.Open(ctx, js, catalog.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	x := catalog.NewIndex(builtin.Registry(), nil)
	followed := make(chan struct{})
	go func() { defer close(followed); cat.Follow(ctx, x) }()
	srv, err := admin.NewServer(nc, admin.ServerConfig{Service: "scheduler", Instance: "s1"})
	if err != nil {
		tb.Fatal(err)
	}
	for verb, h := range catalog.Verbs(cat, x, builtin.Registry()) {
		if err := srv.Handle(verb, h); err != nil {
			tb.Fatal(err)
		}
	}
	s := &Server{URL: ns.ClientURL(), NC: nc, JS: js, Catalog: cat, stop: func() {
		_ = srv.Stop()
		cancel()
		<-followed
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
	}}
	tb.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down: a benchmark starts a fresh one for each
// first apply.
func (s *Server) Stop() { s.once.Do(s.stop) }
