package bench

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name string
		xs   []float64
		want Summary
	}{
		{name: "odd", xs: []float64{3, 1, 2}, want: Summary{Median: 2, Min: 1, Max: 3, N: 3}},
		{name: "even takes the middle two", xs: []float64{4, 1, 3, 2}, want: Summary{Median: 2.5, Min: 1, Max: 4, N: 4}},
		{name: "one", xs: []float64{7}, want: Summary{Median: 7, Min: 7, Max: 7, N: 1}},
		{name: "NaN left out", xs: []float64{math.NaN(), 5, 1}, want: Summary{Median: 3, Min: 1, Max: 5, N: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Summarize(tc.xs))
		})
	}
	empty := Summarize([]float64{math.NaN()})
	assert.Zero(t, empty.N)
	assert.True(t, math.IsNaN(empty.Median))
}

func TestQuantile(t *testing.T) {
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i) // 100..1, unsorted on purpose
	}
	assert.Equal(t, 50.0, Quantile(xs, 0.5))
	assert.Equal(t, 99.0, Quantile(xs, 0.99))
	assert.Equal(t, 1.0, Quantile(xs, 0))
	assert.Equal(t, 100.0, Quantile(xs, 1))
	assert.Equal(t, 100.0, xs[0], "the input is not reordered")
	p50, p99, mx := Quantiles([]float64{0.2})
	assert.Equal(t, []float64{0.2, 0.2, 0.2}, []float64{p50, p99, mx})
	assert.True(t, math.IsNaN(Quantile(nil, 0.5)))
}
