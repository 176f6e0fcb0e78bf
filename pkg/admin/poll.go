package admin

import (
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// PollOf is a poll report as the admin API shows it.
func PollOf(r *pollgridv1.PollReport) Poll {
	return Poll{
		StartedAt:       r.GetStartedAt().AsTime(),
		DurationSeconds: r.GetDuration().AsDuration().Seconds(),
		Outcome:         Outcome(r.GetOutcome()),
		Error:           r.GetError(),
		ItemsFetched:    r.GetItemsFetched(),
		ItemsPublished:  r.GetItemsPublished(),
		NotModified:     r.GetNotModified(),
		RateLimited:     r.GetRateLimited(),
		Worker:          r.GetWorker(),
		TraceID:         r.GetTraceId(),
	}
}

// Outcome names a poll outcome: success, failure or skipped.
func Outcome(o pollgridv1.PollOutcome) string {
	switch o {
	case pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS:
		return "success"
	case pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE:
		return "failure"
	case pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED:
		return "skipped"
	}
	return "unknown"
}
