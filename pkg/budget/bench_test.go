package budget

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// BenchmarkDraw is what a budget adds to each upstream request: one
// EVALSHA of redis_rate's script against a real redis-server. cpu-ns/op is
// this process's CPU (user and system) per draw, without the server's: the
// worker's cost; ns/op is the round trip's wall time.
func BenchmarkDraw(b *testing.B) {
	l, _ := newLimiter(b)
	ctx := context.Background()
	share := l.Share(roomy, time.Time{}, time.Now(), nil)
	if err := share.Take(ctx); err != nil { // loads the script
		b.Fatal(err)
	}
	before := cpuTime()
	for b.Loop() {
		if err := share.Take(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// roomy is a budget no benchmark spends.
var roomy = config.Budget{Name: "gh", Limit: 1_000_000, Per: time.Second, Burst: 1_000_000, Connectors: 1}

// BenchmarkRequest is one upstream request through the client every
// connector uses, to an httptest server in this process, without a budget
// and with one: the difference of their cpu-ns/op is what the budget
// costs a poll's request.
func BenchmarkRequest(b *testing.B) {
	l, _ := newLimiter(b)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"items": []}`))
	}))
	defer srv.Close()
	client := upstream.NewClient(upstream.Options{Allow: egress.Loopback()})
	get := func(b *testing.B, ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for _, tc := range []struct {
		name string
		ctx  func() context.Context
	}{
		{"no-budget", context.Background},
		{"budget", func() context.Context {
			return upstream.WithBudget(context.Background(), l.Share(roomy, time.Time{}, time.Now(), nil))
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			get(b, tc.ctx()) // a warm connection, the script loaded
			before := cpuTime()
			for b.Loop() {
				get(b, tc.ctx())
			}
			b.ReportMetric(float64((cpuTime()-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
