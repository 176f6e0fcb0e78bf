// Package failpoint stops a worker dead at a named point of the poll path,
// for the fault suite: a binary built with -tags failpoints and started
// with POLLGRID_FAILPOINT=<point> kills itself (SIGKILL, as a crash or the
// OOM killer would) the first time it reaches that point. In every other
// build Hit does nothing and the environment variable is not read.
package failpoint

// The points, in the order a poll passes them.
const (
	// AfterPublish: the poll's signals are in JetStream, its cursor and
	// seen versions are not yet committed to Redis.
	AfterPublish = "after-publish"
	// AfterCommit: the state is committed, the tick not yet acked.
	AfterCommit = "after-commit"
)

// Points lists every point, for checking POLLGRID_FAILPOINT.
var Points = []string{AfterPublish, AfterCommit}
