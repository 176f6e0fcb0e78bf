// Command aggregator is pollgrid's aggregator service. Configuration comes from the
// environment (NATS_URL, REDIS_URL, CONNECTORS_FILE, HTTP_ADDR, ...): see
// docs/connector-framework.md. Run with -check-config to validate the config.
package main

import "github.com/pollgrid/pollgrid/pkg/service"

func main() { service.Main(service.Aggregator) }
