package worker

import (
	"errors"
	"net/http"

	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// rateLimited reports whether a failed poll's last answer was 429 Too Many
// Requests: the freshness views count these per connector.
func rateLimited(err error) bool {
	var status *upstream.StatusError
	return errors.As(err, &status) && status.StatusCode == http.StatusTooManyRequests
}
