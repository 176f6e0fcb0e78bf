package catalog_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/connectors/builtin"
)

// BenchmarkIndexLoad is a scheduler's (or aggregator's) first read (Load) of a
// catalog of 100,000 ordinary http-json definitions (~190 bytes each): the
// time per definition, and the heap the index keeps per connector (what
// bounds the scheduler's memory).
func BenchmarkIndexLoad(b *testing.B) {
	const n = 100_000
	values := make([][]byte, n)
	for i := range values {
		values[i] = fmt.Appendf(nil, `{"name": "c-%06d", "type": "http-json", "interval": "60s", "labels": {"team": "t%d"}, `+
			`"config": {"url": "https://api.example.com/items?page=%d", "items": ".items", "id": ".id"}}`, i, i%10, i)
	}
	var kept float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := catalog.NewIndex(builtin.Registry(), nil)
		entries := make([]catalog.Entry, len(values))
		for i, v := range values {
			entries[i] = catalog.Entry{Ref: catalog.Connector(fmt.Sprintf("c-%06d", i)), Value: v, Revision: uint64(i + 1)}
		}
		x.Load(entries) // a watch's first read
		entries = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		if x.Len() != n {
			b.Fatalf("the index holds %d of %d connectors: %v", x.Len(), n, x.Invalid())
		}
		kept = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(x)
	}
	b.ReportMetric(kept, "heap-B/connector")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/definition")
}
