package bus

// AdaptSubject is where a worker asks the scheduler to change the interval a
// connector's ticks fire at (core NATS; the leader acts on it, other
// replicas ignore it): an adaptive connector's new effective interval, a
// connector that fell behind its schedule, or one that caught up. A request
// lost is asked again after a later poll: the tick carries the interval its
// schedule fires at, and the worker compares it with what it wants.
const AdaptSubject = "pollgrid.scheduler.adapt"

// Adapt is the request on AdaptSubject, as JSON.
type Adapt struct {
	Connector string `json:"connector"`
	Type      string `json:"type"`
	// IntervalSeconds is the interval the worker wants the ticks at, whole
	// seconds: an adaptive connector's effective interval (within its
	// adaptive bounds), or, for a connector that is not adaptive, its
	// configured interval (it caught up: see BehindSeconds). 0 in a
	// request that sets BehindSeconds.
	IntervalSeconds int64 `json:"interval_seconds"`
	// BehindSeconds, when set, says the connector fell behind its schedule:
	// at least one fire found its tick still waiting and replaced it. It is
	// the seconds between the connector's last two polls, the pace its
	// workers managed; the scheduler stretches its schedule to about that
	// (pkg/scheduler, pace.go).
	BehindSeconds float64 `json:"behind_seconds,omitempty"`
	// ScheduledSeconds, with BehindSeconds, is the interval the tick that
	// showed it fired at: a request about a denser schedule than the one
	// the scheduler holds now was asked before the stretch, and is dropped.
	ScheduledSeconds float64 `json:"scheduled_seconds,omitempty"`
	// Revision is the revision of the connector's definition the worker
	// computed it from; the scheduler ignores a request for an older one.
	Revision uint64 `json:"revision"`
}
