package admin

import (
	"github.com/pollgrid/pollgrid/pkg/bus"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// PollOf is a poll report as the admin API shows it.
func PollOf(r *pollgridv1.PollReport) Poll {
	return Poll{
		StartedAt:       r.GetStartedAt().AsTime(),
		DurationSeconds: r.GetDuration().AsDuration().Seconds(),
		Outcome:         bus.OutcomeName(r.GetOutcome()),
		Error:           r.GetError(),
		ItemsFetched:    r.GetItemsFetched(),
		ItemsPublished:  r.GetItemsPublished(),
		NotModified:     r.GetNotModified(),
		RateLimited:     r.GetRateLimited(),
		Worker:          r.GetWorker(),
		TraceID:         r.GetTraceId(),
	}
}
