package telemetry

import (
	"os"
	"strconv"
)

// InstanceID names this process where it reports itself (a worker's leases
// and poll reports, the scheduler's leader lease, each process's instance of
// the admin service) when no id is configured: <host>-<pid>, unique among
// the replicas that run at once.
func InstanceID() string {
	host, _ := os.Hostname()
	return host + "-" + strconv.Itoa(os.Getpid())
}
