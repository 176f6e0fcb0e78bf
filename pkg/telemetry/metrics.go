package telemetry

import "github.com/prometheus/client_golang/prometheus"

// NewDependencyErrors is pollgrid_dependency_errors_total, the one series
// every service counts its NATS and Redis errors in, by system ("nats",
// "redis") and operation. The caller registers it.
func NewDependencyErrors() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pollgrid_dependency_errors_total", Help: "Errors talking to NATS or Redis, by system and operation.",
	}, []string{"system", "op"})
}
