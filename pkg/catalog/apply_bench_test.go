package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/catalog/catalogtest"
)

// BenchmarkApplyVerb100k is the scheduler's side of `pollctl apply -f` of
// 100,000 http-json connectors (188 bytes each, as test/bench's catalog
// scenario writes them): the apply verb served on an embedded NATS, asked
// for the file in parts of 768 KiB, four at a time after the first, as
// pollctl asks. "first" writes them into an empty catalog (each part
// checked, then written), "again" asks the same parts once they are held
// (0 writes). pollctl's own side (its check of the file, its diff) is
// services/pollctl's BenchmarkApply100k.
func BenchmarkApplyVerb100k(b *testing.B) {
	const n = 100_000
	parts := benchParts(n, 768<<10)
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			client, stop := startVerbs(b)
			b.StartTimer()
			if created := applyParts(b, client, parts).Created; len(created) != n {
				b.Fatalf("created %d of %d", len(created), n)
			}
			b.StopTimer()
			stop()
			b.StartTimer()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/connector")
	})
	b.Run("again", func(b *testing.B) {
		client, stop := startVerbs(b)
		defer stop()
		applyParts(b, client, parts)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if reply := applyParts(b, client, parts); reply.Unchanged != n {
				b.Fatalf("%d of %d unchanged", reply.Unchanged, n)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/connector")
	})
}

// benchParts writes n connectors in parts of about size bytes.
func benchParts(n, size int) [][]json.RawMessage {
	var parts [][]json.RawMessage
	bytes := size
	for i := range n {
		c := json.RawMessage(fmt.Sprintf(`{"config":{"id":".id","items":".items","url":"http://127.0.0.1:41234/items/%d","version":".version"},`+
			`"enabled":true,"interval":"60s","name":"c%d","timeout":"10s","type":"http-json"}`, i, i))
		if bytes+len(c) > size {
			parts, bytes = append(parts, nil), 0
		}
		parts[len(parts)-1] = append(parts[len(parts)-1], c)
		bytes += len(c) + 1
	}
	return parts
}

// startVerbs serves the catalog's verbs as a scheduler does, on a server
// of its own that stop ends (a first apply finds an empty catalog).
func startVerbs(b *testing.B) (client *admin.Client, stop func()) {
	b.Helper()
	s := catalogtest.Start(b)
	return admin.NewClient(s.NC, time.Minute), s.Stop
}

// applyParts asks the first part alone, then the others four at a time.
func applyParts(b *testing.B, client *admin.Client, parts [][]json.RawMessage) admin.ApplyReply {
	b.Helper()
	type answer struct {
		reply admin.ApplyReply
		err   error
	}
	answers := make(chan answer, len(parts))
	ask := func(part []json.RawMessage) {
		reply, err := client.Apply(context.Background(), admin.ApplyRequest{Connectors: part})
		answers <- answer{reply, err}
	}
	ask(parts[0])
	inFlight := make(chan struct{}, 4)
	for _, part := range parts[1:] {
		inFlight <- struct{}{}
		go func() { defer func() { <-inFlight }(); ask(part) }()
	}
	var all admin.ApplyReply
	for range parts {
		a := <-answers
		if a.err != nil {
			b.Fatal(a.err)
		}
		all.Created = append(all.Created, a.reply.Created...)
		all.Unchanged += a.reply.Unchanged
	}
	return all
}
