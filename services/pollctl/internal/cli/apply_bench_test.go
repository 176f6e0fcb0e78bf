package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/pollgrid/pollgrid/pkg/catalog/catalogtest"
)

// benchConnectors is the size of the file BenchmarkApply100k applies: the
// catalog scenario of test/bench (issue 16's goals).
const benchConnectors = 100_000

// BenchmarkApply100k is `pollctl apply -f` of 100,000 http-json connectors
// (188 bytes each, as the catalog scenario writes them) against an
// embedded NATS with the scheduler's catalog verbs and index in this
// process: "first" into an empty catalog (validate + write), "again" the
// same file once it is held (0 writes). The time includes the scheduler's
// side, which shares the process: a CPU profile's samples of pollctl
// carry the label side=pollctl (go tool pprof -tagfocus side=pollctl).
func BenchmarkApply100k(b *testing.B) {
	file := filepath.Join(b.TempDir(), "connectors.json")
	if err := os.WriteFile(file, benchFile(benchConnectors), 0o600); err != nil {
		b.Fatal(err)
	}
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			s := startBenchCatalog(b)
			b.StartTimer()
			s.apply(b, file, fmt.Sprintf("%d created, 0 changed, 0 deleted, 0 unchanged", benchConnectors))
			b.StopTimer()
			s.Stop()
			b.StartTimer()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchConnectors, "ns/connector")
	})
	b.Run("again", func(b *testing.B) {
		s := startBenchCatalog(b)
		defer s.Stop()
		s.apply(b, file, "") // not one of the measured: its side is "setup"
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			s.apply(b, file, fmt.Sprintf("0 created, 0 changed, 0 deleted, %d unchanged", benchConnectors))
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchConnectors, "ns/connector")
	})
}

// benchFile writes n connectors as test/bench's catalog scenario does.
func benchFile(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"connectors":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"config":{"id":".id","items":".items","url":"http://127.0.0.1:41234/items/%d","version":".version"},`+
			`"enabled":true,"interval":"60s","name":"c%d","timeout":"10s","type":"http-json"}`, i, i)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// benchCatalog is catalogServer for a benchmark: started and stopped
// within one, so that each first apply finds an empty catalog.
type benchCatalog struct{ *catalogtest.Server }

func startBenchCatalog(b *testing.B) benchCatalog { return benchCatalog{catalogtest.Start(b)} }

// apply runs pollctl apply -f file and checks that it printed summary
// (none: an apply that prepares a benchmark, labelled side=setup).
func (s benchCatalog) apply(b *testing.B, file, summary string) {
	b.Helper()
	side := "pollctl"
	if summary == "" {
		side = "setup"
	}
	var out, errOut bytes.Buffer
	env := map[string]string{"HOME": b.TempDir()}
	code := 0
	// The label marks pollctl's goroutines, and those they start, in a
	// CPU profile: -tagfocus side=pollctl leaves the scheduler's out.
	pprof.Do(context.Background(), pprof.Labels("side", side), func(context.Context) {
		code = Main([]string{"--server", s.URL, "apply", "-f", file}, IO{In: strings.NewReader(""), Out: &out, Err: &errOut,
			Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	})
	if code != ExitOK {
		b.Fatalf("pollctl apply: exit %d: %s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), summary) {
		b.Fatalf("pollctl apply printed %q, want %q", out.String(), summary)
	}
}
