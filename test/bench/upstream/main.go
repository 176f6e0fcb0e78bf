// Command upstream is the local HTTP API of the benchmarks: GET /items/<i>
// answers connector i with a JSON body holding one item, {"items": [{"id":
// "<i>", "version": <n>, "payload": "..."}]}, and records what pollgrid (or
// the raw loop) did to it, served as JSON for the benchmarks to read:
// /stats (connections accepted, requests, double polls, cut requests),
// /polls (when each connector was polled), /cuts (requests whose client
// vanished, with the connector's next request) and /versions (the last
// version answered whole per connector). See bench.Upstream* for the shapes.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:0", "listen address")
	flag.IntVar(&cfg.Connectors, "connectors", 10_000, "connectors served, /items/0 to /items/<n-1>")
	flag.IntVar(&cfg.BodyBytes, "body-bytes", 2048, "pad each answer to about this many bytes (0: no padding)")
	flag.DurationVar(&cfg.Delay, "delay", 0, "wait this long before answering")
	flag.DurationVar(&cfg.VersionPeriod, "version-period", 0,
		"the item's version changes once per period (0: on every request)")
	flag.Parse()

	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		log.Fatalf("upstream: listen: %v", err)
	}
	s := newServer(cfg)
	srv := &http.Server{Handler: s.handler(), ConnState: s.connState, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stdout, "upstream listening on %s\n", l.Addr())
	if err := srv.Serve(l); err != nil {
		log.Fatalf("upstream: %v", err)
	}
}
