package bench

import (
	"math"
	"slices"
)

// Summary is a measure over the repetitions of a scenario.
type Summary struct {
	Median, Min, Max float64
	// N is the number of repetitions that gave a value.
	N int
}

// Summarize returns the median (the mean of the middle two for an even
// count), min and max of xs, ignoring NaN (a run that could not measure).
func Summarize(xs []float64) Summary {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	s := Summary{Min: v[0], Max: v[len(v)-1], N: len(v)}
	if n := len(v); n%2 == 1 {
		s.Median = v[n/2]
	} else {
		s.Median = (v[n/2-1] + v[n/2]) / 2
	}
	return s
}

// Quantile is the nearest-rank q-quantile of xs (q in [0, 1]): the smallest
// value with at least q of the values at or below it. NaN for no values.
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	v := slices.Clone(xs)
	slices.Sort(v)
	return sortedQuantile(v, q)
}

func sortedQuantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Quantiles returns the p50, p99 and max of xs.
func Quantiles(xs []float64) (p50, p99, maxV float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	v := slices.Clone(xs)
	slices.Sort(v)
	return sortedQuantile(v, 0.50), sortedQuantile(v, 0.99), v[len(v)-1]
}
