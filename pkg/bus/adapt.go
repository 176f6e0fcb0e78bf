package bus

// AdaptSubject is where a worker asks the scheduler to fire an adaptive
// connector's ticks at a new effective interval (core NATS; the leader acts
// on it, other replicas ignore it). A request lost is asked again after a
// later poll: the tick carries the interval its schedule fires at, and the
// worker compares it with the one it computed.
const AdaptSubject = "pollgrid.scheduler.adapt"

// Adapt is the request on AdaptSubject, as JSON.
type Adapt struct {
	Connector string `json:"connector"`
	Type      string `json:"type"`
	// IntervalSeconds is the new effective interval, whole seconds, within
	// the connector's adaptive bounds.
	IntervalSeconds int64 `json:"interval_seconds"`
	// Revision is the revision of the connector's definition the worker
	// computed it from; the scheduler ignores a request for an older one.
	Revision uint64 `json:"revision"`
}
