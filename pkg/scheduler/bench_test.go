package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// bigCatalog writes n connectors to the fixture's catalog and waits until
// the index holds them.
func bigCatalog(b *testing.B, fx *fixture, n int, interval string) {
	b.Helper()
	connectors := make([]string, n)
	for i := range connectors {
		connectors[i] = fmt.Sprintf(`{"name": "c-%06d", "type": "fake", "interval": %q}`, i, interval)
	}
	fx.apply(b, file(connectors...))
	require.Eventually(b, func() bool { return fx.index.Len() == n }, time.Minute, 10*time.Millisecond)
}

func sizes(b *testing.B) []int {
	if testing.Short() {
		return []int{10_000}
	}
	return []int{10_000, 100_000}
}

// BenchmarkFullSync is the leader's sync every Resync: every connector's
// schedule installed already, so it reads them all and changes nothing.
// B/op includes the embedded nats-server's work for the reads.
func BenchmarkFullSync(b *testing.B) {
	for _, n := range sizes(b) {
		b.Run(fmt.Sprintf("connectors=%d", n), func(b *testing.B) {
			fx := newFixture(b)
			fx.follow(b)
			<-fx.index.Synced()
			bigCatalog(b, fx, n, "6h")
			require.NoError(b, fx.s.sync(fx.ctx, false))
			b.ReportAllocs()
			for b.Loop() {
				require.NoError(b, fx.s.sync(fx.ctx, false))
			}
			require.Equal(b, float64(n), fx.counter("install"), "a sync of installed schedules installed some again")
		})
	}
}

// BenchmarkChangePass is the change pass after one apply changed every
// connector's interval: n schedules read by name and installed again.
func BenchmarkChangePass(b *testing.B) {
	for _, n := range sizes(b) {
		b.Run(fmt.Sprintf("connectors=%d", n), func(b *testing.B) {
			fx := newFixture(b)
			fx.follow(b)
			<-fx.index.Synced()
			bigCatalog(b, fx, n, "6h")
			require.NoError(b, fx.s.sync(fx.ctx, false))
			intervals := []string{"12h", "6h"}
			want := []time.Duration{12 * time.Hour, 6 * time.Hour}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				b.StopTimer()
				bigCatalog(b, fx, n, intervals[i%2])
				require.Eventually(b, func() bool {
					c, _ := fx.index.Connector(fmt.Sprintf("c-%06d", n-1))
					return c.Interval == want[i%2]
				}, time.Minute, 10*time.Millisecond)
				i++
				b.StartTimer()
				require.NoError(b, fx.s.applyChanges(fx.ctx, nil))
			}
		})
	}
}
