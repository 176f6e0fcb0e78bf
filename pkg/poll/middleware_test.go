package poll

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/egress"
	"github.com/pollgrid/pollgrid/pkg/upstream"
)

// failing fails its first n calls with err (or panics with it when err is
// nil), then succeeds; calls counts them.
func failing(n int, err error, calls *int) Fetch {
	return func(ctx context.Context, in connector.State) (connector.Result, error) {
		*calls++
		if *calls <= n {
			if err == nil {
				panic("boom")
			}
			return connector.Result{}, err
		}
		return connector.Result{State: connector.State{Cursor: in.Cursor + "+"}}, nil
	}
}

// status is a connector's error wrapping the upstream's answer of code.
func status(code int) error {
	return fmt.Errorf("list releases: %w", &upstream.StatusError{StatusCode: code, Status: fmt.Sprintf("%d %s", code, http.StatusText(code))})
}

func TestRecover(t *testing.T) {
	calls := 0
	_, err := Recover(failing(1, nil, &calls))(t.Context(), connector.State{})
	var panicked *PanicError
	require.ErrorAs(t, err, &panicked)
	assert.Equal(t, "boom", panicked.Value)
	assert.Contains(t, string(panicked.Stack), "middleware_test.go:", "the stack shows the panicking code")
	assert.EqualError(t, err, "connector panicked: boom")
}

func TestTimeoutBoundsEachCall(t *testing.T) {
	var deadlines []time.Time
	call := Timeout(time.Minute)(func(ctx context.Context, _ connector.State) (connector.Result, error) {
		d, ok := ctx.Deadline()
		require.True(t, ok, "the call has a deadline")
		deadlines = append(deadlines, d)
		return connector.Result{}, nil
	})
	start := time.Now()
	_, _ = call(t.Context(), connector.State{})
	_, _ = call(t.Context(), connector.State{})
	require.Len(t, deadlines, 2)
	for _, d := range deadlines {
		assert.WithinDuration(t, start.Add(time.Minute), d, 10*time.Second)
	}
}

func TestRetry(t *testing.T) {
	errDown := errors.New("503 Service Unavailable")
	tests := []struct {
		name      string
		fails     int
		err       error
		asked     bool
		wantCalls int
		wantErr   string
	}{
		{name: "success at once", fails: 0, err: errDown, wantCalls: 1},
		{name: "an outage that ends within the retries", fails: 2, err: errDown, wantCalls: 3},
		{name: "an outage longer than the retries", fails: 5, err: errDown, wantCalls: 3, wantErr: "503 Service Unavailable"},
		{name: "a panic is not retried", fails: 5, err: nil, wantCalls: 1, wantErr: "connector panicked: boom"},
		{name: "the outbound guard's refusal is not retried", fails: 5, err: fmt.Errorf("get: %w", egress.ErrRefused), wantCalls: 1, wantErr: egress.ErrRefused.Error()},
		{name: "an upstream that asked to wait is not retried now", fails: 5, err: errDown, asked: true, wantCalls: 1, wantErr: "503"},
		{name: "a 401 is not retried within the tick", fails: 5, err: status(401), wantCalls: 1, wantErr: "401 Unauthorized"},
		{name: "a 404 is not retried within the tick", fails: 5, err: status(404), wantCalls: 1, wantErr: "404 Not Found"},
		{name: "a bare 429 is not retried within the tick", fails: 5, err: status(429), wantCalls: 1, wantErr: "429"},
		{name: "a 408 is retried", fails: 1, err: status(408), wantCalls: 2},
		{name: "a 503 is retried", fails: 1, err: status(503), wantCalls: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls, counted := 0, 0
			var waits []time.Duration
			call := Chain(failing(tt.fails, tt.err, &calls),
				Retry(RetryPolicy{Max: 2, Backoff: time.Second, Calls: &counted,
					Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil },
					Asked: func() bool { return tt.asked }}),
				Recover)
			res, err := call(t.Context(), connector.State{Cursor: "c"})
			assert.Equal(t, tt.wantCalls, calls)
			assert.Equal(t, tt.wantCalls, counted, "Calls says how many calls were made")
			assert.Len(t, waits, tt.wantCalls-1)
			for i, w := range waits {
				assert.LessOrEqual(t, w, time.Second<<i, "full jitter up to the doubled backoff")
			}
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, "c+", res.State.Cursor, "the state reaches the connector")
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestRetryStopsWhenItsWaitIsCut(t *testing.T) {
	calls := 0
	ctx, cancel := context.WithCancel(t.Context())
	call := Retry(RetryPolicy{Max: 5, Backoff: time.Hour, Calls: new(int),
		Sleep: func(ctx context.Context, _ time.Duration) error { cancel(); return ctx.Err() }})(failing(9, errors.New("timeout"), &calls))
	_, err := call(ctx, connector.State{})
	assert.Equal(t, 1, calls)
	assert.ErrorIs(t, err, context.Canceled)
	assert.EqualError(t, err, "context canceled (last error: timeout)")
}

func TestChainOrder(t *testing.T) {
	var order []string
	mark := func(name string) Middleware {
		return func(next Fetch) Fetch {
			return func(ctx context.Context, in connector.State) (connector.Result, error) {
				order = append(order, name)
				return next(ctx, in)
			}
		}
	}
	calls := 0
	_, err := Chain(failing(0, nil, &calls), mark("outer"), mark("inner"))(t.Context(), connector.State{})
	require.NoError(t, err)
	assert.Equal(t, []string{"outer", "inner"}, order)
}
