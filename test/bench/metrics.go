package bench

import (
	"fmt"
	"io"
	"math"
	"slices"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Bucket is one cumulative histogram bucket: Count observations were at
// or below UpperBound.
type Bucket struct {
	UpperBound float64
	Count      float64
}

// Metrics is one scrape of a service's /metrics (Prometheus text format).
type Metrics map[string]*dto.MetricFamily

// ParseMetrics reads the Prometheus text format.
func ParseMetrics(r io.Reader) (Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return Metrics(mf), nil
}

// Value is the sum over every series of a counter or gauge; false when
// the family is absent.
func (m Metrics) Value(name string) (float64, bool) {
	f, ok := m[name]
	if !ok {
		return 0, false
	}
	var v float64
	for _, s := range f.GetMetric() {
		switch {
		case s.GetCounter() != nil:
			v += s.GetCounter().GetValue()
		case s.GetGauge() != nil:
			v += s.GetGauge().GetValue()
		case s.GetUntyped() != nil:
			v += s.GetUntyped().GetValue()
		}
	}
	return v, true
}

// Histogram is the cumulative buckets of a histogram summed over its
// series (+Inf last, holding the total); false when the family is absent.
func (m Metrics) Histogram(name string) ([]Bucket, bool) {
	f, ok := m[name]
	if !ok {
		return nil, false
	}
	sum := map[float64]float64{}
	var total float64
	for _, s := range f.GetMetric() {
		h := s.GetHistogram()
		if h == nil {
			continue
		}
		total += float64(h.GetSampleCount())
		for _, b := range h.GetBucket() {
			sum[b.GetUpperBound()] += float64(b.GetCumulativeCount())
		}
	}
	var out []Bucket
	for ub, c := range sum {
		if !math.IsInf(ub, 1) {
			out = append(out, Bucket{UpperBound: ub, Count: c})
		}
	}
	slices.SortFunc(out, func(a, b Bucket) int { return compare(a.UpperBound, b.UpperBound) })
	return append(out, Bucket{UpperBound: math.Inf(1), Count: total}), true
}

func compare(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// SubBuckets returns after − before, bucket by bucket (the observations
// between two scrapes); before may be nil.
func SubBuckets(after, before []Bucket) []Bucket {
	out := slices.Clone(after)
	for i := range out {
		for _, b := range before {
			if b.UpperBound == out[i].UpperBound {
				out[i].Count -= b.Count
			}
		}
	}
	return out
}

// BucketQuantile is the upper bound of the first bucket holding the
// q-quantile: the q-quantile is at most this (+Inf when it lies beyond the
// last finite bucket, NaN when there are no observations).
func BucketQuantile(buckets []Bucket, q float64) float64 {
	if len(buckets) == 0 || buckets[len(buckets)-1].Count <= 0 {
		return math.NaN()
	}
	want := q * buckets[len(buckets)-1].Count
	for _, b := range buckets {
		if b.Count >= want {
			return b.UpperBound
		}
	}
	return math.Inf(1)
}
