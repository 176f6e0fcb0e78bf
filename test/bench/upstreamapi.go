package bench

// The HTTP API of the bench upstream (test/bench/upstream), shared by the
// upstream and the scenarios that read it.

// UpstreamStats is GET /stats.
type UpstreamStats struct {
	// Connections is the number of TCP connections accepted so far.
	Connections int64 `json:"connections"`
	// Requests is the number of poll requests (GET /items/<i>) so far.
	Requests int64 `json:"requests"`
	// Completed counts answers written whole.
	Completed int64 `json:"completed"`
	// Overlaps counts requests that began while another request of the
	// same connector was in flight: a double poll.
	Overlaps int64 `json:"overlaps"`
	// Cuts counts requests whose client went away before the answer
	// (a killed worker).
	Cuts int64 `json:"cuts"`
}

// UpstreamPolls is GET /polls?since=<unix ms>: per connector (index i of
// /items/<i>), the unix milliseconds at which its requests began, at or
// after since, ascending.
type UpstreamPolls struct {
	Times [][]int64 `json:"times"`
}

// UpstreamCut is one element of GET /cuts?since=<unix ns>: a request cut by
// its client, and when the connector's next request began.
type UpstreamCut struct {
	Connector int `json:"connector"`
	// AtNS is when the upstream saw the client go (unix ns).
	AtNS int64 `json:"at_ns"`
	// StartNS is when the cut request began (unix ns).
	StartNS int64 `json:"start_ns"`
	// NextNS is when the connector's next request began (unix ns), 0 when
	// none has yet.
	NextNS int64 `json:"next_ns"`
}

// UpstreamVersions is GET /versions: per connector, the version of the last
// answer written whole ("" when none).
type UpstreamVersions struct {
	Last []string `json:"last"`
}
