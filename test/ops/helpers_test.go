package ops

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// metricValue is the value of an unlabelled series on a service's /metrics
// (-1 when absent).
func metricValue(t *testing.T, base, series string) float64 {
	_, body := httpGet(t, base+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			require.NoError(t, err)
			return f
		}
	}
	return -1
}

func tickFor(name string) *pollgridv1.Tick {
	return &pollgridv1.Tick{Connector: name, ConnectorType: "weather-noaa", Interval: durationpb.New(time.Second)}
}
