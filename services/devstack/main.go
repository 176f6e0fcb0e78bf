// Command devstack runs the whole pollgrid stack in one process (make run):
// embedded NATS with JetStream on 127.0.0.1:4222 (NATS_PORT), an embedded
// Redis-protocol store unless REDIS_URL is set, the scheduler, two workers and
// the aggregator on 127.0.0.1:8080 (HTTP_PORT). NATS_URL uses a real NATS.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pollgrid/pollgrid/pkg/service"
	"github.com/pollgrid/pollgrid/services/devstack/stack"
	"github.com/pollgrid/pollgrid/services/worker/workerd"
)

func main() {
	for _, a := range os.Args[1:] {
		if a == "-check-config" || a == "--check-config" {
			os.Exit(service.CheckConfig(os.LookupEnv, workerd.Service.Connectors, os.Stdout, os.Stderr))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Caught for the whole run, so that a HUP never ends the stack, even
	// while it starts; each service reloads on the HUPs it receives once
	// it runs (its config is read fresh when it starts).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	if err := stack.Run(ctx, os.LookupEnv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pollgrid devstack:", err)
		os.Exit(1)
	}
	fmt.Println("pollgrid devstack: stopped cleanly")
}
