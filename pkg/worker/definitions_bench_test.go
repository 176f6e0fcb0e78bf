package worker

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
)

// benchDefined is how many connectors the benchmarks define: more than
// the cache holds, as a worker of a large installation meets them.
const benchDefined = 20_000

// benchFixture is a worker whose catalog defines benchDefined connectors,
// each written straight to the bucket (an apply of the whole file costs
// the same and says nothing about the worker).
func benchFixture(b *testing.B, cache int) (*fixture, []config.Connector) {
	b.Helper()
	fx := newFixture(b, Options{DefinitionsCache: cache})
	ctx := context.Background()
	connectors := make([]config.Connector, benchDefined)
	for i := range connectors {
		connectors[i] = withConfig(fmt.Sprintf("feed-%d", i), fmt.Sprintf(`{"url":"https://api.example.com/items/%d"}`, i))
		value := fmt.Sprintf(`{"name":%q,"type":%q,"interval":"1m","config":%s}`, connectors[i].Name, feedType, connectors[i].Config)
		_, err := fx.cat.Put(ctx, catalog.Connector(connectors[i].Name), []byte(value), 0)
		require.NoError(b, err)
	}
	return fx, connectors
}

// heldMiB is the live heap after a collection, in MiB.
func heldMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// BenchmarkAdmit measures a tick's look-up of its connector: held (the
// cache holds every connector), and past the cache (each tick reads the
// catalog and checks the definition again), with the heap the worker
// holds afterwards.
func BenchmarkAdmit(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache int
	}{{name: "held", cache: benchDefined}, {name: "past-the-cache", cache: 1024}} {
		b.Run(bc.name, func(b *testing.B) {
			fx, connectors := benchFixture(b, bc.cache)
			ctx := context.Background()
			ack := &answers{}
			for _, c := range connectors { // warm: every connector met once
				_, ok := fx.w.admit(ctx, tickOf(c), ack)
				require.True(b, ok)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, ok := fx.w.admit(ctx, tickOf(connectors[i%len(connectors)]), ack); !ok {
					b.Fatal("not admitted")
				}
			}
			b.StopTimer()
			b.ReportMetric(heldMiB(), "heap-MiB")
			b.ReportMetric(float64(fx.w.defs.instances.Len()), "held")
		})
	}
}
