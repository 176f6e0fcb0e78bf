package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/pollgrid/pollgrid/pkg/catalog"
)

func TestSpec(t *testing.T) {
	for _, tt := range []struct {
		interval time.Duration
		phase    time.Duration
		want     string
	}{
		{time.Second, 0, "* * * * * *"},
		{10 * time.Second, 3 * time.Second, "3/10 * * * * *"},
		{30 * time.Second, 29 * time.Second, "29/30 * * * * *"},
		{time.Minute, 17 * time.Second, "17 * * * * *"},
		{5 * time.Minute, 137 * time.Second, "17 2/5 * * * *"},
		{15 * time.Minute, 14*time.Minute + 59*time.Second, "59 14/15 * * * *"},
		{time.Hour, 1234 * time.Second, "34 20 * * * *"},
		{6 * time.Hour, 5*time.Hour + 61*time.Second, "1 1 5/6 * * *"},
		{24 * time.Hour, 23 * time.Hour, "0 0 23/24 * * *"},
		// Intervals that divide no minute, hour or day.
		{7 * time.Second, 0, "@every 7s"},
		{90 * time.Second, 0, "@every 1m30s"},
		{7 * time.Minute, 0, "@every 7m0s"},
		{48 * time.Hour, 0, "@every 48h0m0s"},
	} {
		t.Run(tt.interval.String(), func(t *testing.T) {
			name := nameWithPhase(t, tt.interval, tt.phase)
			assert.Equal(t, tt.want, Spec(name, tt.interval))
		})
	}
}

// nameWithPhase finds a connector name whose phase in interval is phase.
func nameWithPhase(t *testing.T, interval, phase time.Duration) string {
	t.Helper()
	for i := range 10_000_000 {
		name := fmt.Sprintf("c-%d", i)
		if Phase(name, interval) == phase {
			return name
		}
	}
	t.Fatalf("no name has phase %s in %s", phase, interval)
	return ""
}

func TestPhasesSpreadEvenly(t *testing.T) {
	const n, interval = 100_000, 10 * time.Second
	perSecond := map[time.Duration]int{}
	for i := range n {
		p := Phase(fmt.Sprintf("connector-%d", i), interval)
		assert.True(t, p >= 0 && p < interval && p%time.Second == 0, "phase %s", p)
		perSecond[p]++
	}
	assert.Len(t, perSecond, 10)
	for p, count := range perSecond {
		assert.InDelta(t, n/10, count, n/100, "phase %s", p) // within 10% of even
	}
}

func TestPartition(t *testing.T) {
	cs := make([]catalog.Defined, 7)
	for i := range cs {
		cs[i].Name = fmt.Sprintf("c%d", i)
	}
	state := []uint8{current, missing, differs, missing, current, differs, missing}
	fresh, install := partition(cs, state)
	names := func(cs []catalog.Defined) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	assert.ElementsMatch(t, []string{"c1", "c3", "c6"}, names(fresh))
	assert.ElementsMatch(t, []string{"c1", "c3", "c6", "c2", "c5"}, names(install))
	assert.Equal(t, fresh, install[:len(fresh)], "the fresh lead the installs")
	assert.ElementsMatch(t, []string{"c0", "c4"}, names(cs[len(install):]), "the current are left out")
}
