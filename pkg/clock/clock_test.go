package clock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestSleep(t *testing.T) {
	stopped := errors.New("worker stopping")
	ended, cancel := context.WithCancelCause(context.Background())
	cancel(stopped)

	tests := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want error
	}{
		{"the time passes", context.Background(), time.Millisecond, nil},
		{"the context ends first, with its cause", ended, time.Hour, stopped},
		{"no time to wait, whatever the context", ended, 0, nil},
		{"a negative wait", context.Background(), -time.Second, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Sleep(tt.ctx, tt.d)
			if tt.want == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tt.want)
			}
		})
	}
}
