// Command scheduler is pollgrid's scheduler service; its wiring is package schedulerd.
// Configuration comes from the environment (NATS_URL, REDIS_URL,
// CONNECTORS_FILE, HTTP_ADDR, ...): see docs/connector-framework.md. Run
// with -check-config to validate the config, -version for the build.
package main

import (
	"github.com/pollgrid/pollgrid/pkg/service"
	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
)

func main() { service.Main(schedulerd.Service) }
