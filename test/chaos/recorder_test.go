package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// signal is one message of the SIGNALS stream.
type signal struct {
	conn, item string
	version    string
	change     string
	// sequence is the body's per-item change number, "" when the body has
	// none (read leniently: the field is new).
	sequence string
	ceID     string
	seq      uint64
	data     json.RawMessage
}

// lastSeq is the SIGNALS stream's last sequence (0 while NATS is away).
func (s *stack) lastSeq() uint64 {
	nc, err := nats.Connect(s.natsURL, nats.Timeout(2*time.Second))
	if err != nil {
		return 0
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "SIGNALS")
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.LastSeq
}

// readSignals reads the stream's messages after seq from, up to its end.
func (s *stack) readSignals(from uint64) ([]signal, error) {
	nc, err := nats.Connect(s.natsURL, nats.Timeout(2*time.Second))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "SIGNALS")
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	last := info.State.LastSeq
	if last <= from {
		return nil, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from + 1})
	if err != nil {
		return nil, err
	}
	var out []signal
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return out, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return out, err
			}
			// Unknown fields are ignored: the body gains fields over time.
			var body struct {
				ItemID   string          `json:"item_id"`
				Version  string          `json:"version"`
				Change   string          `json:"change"`
				Sequence json.RawMessage `json:"sequence"`
				Data     json.RawMessage `json:"data"`
			}
			_ = json.Unmarshal(m.Data(), &body)
			parts := strings.Split(m.Subject(), ".")
			out = append(out, signal{conn: parts[len(parts)-1], item: body.ItemID, version: body.Version, change: body.Change,
				sequence: strings.Trim(string(body.Sequence), `"`), ceID: m.Headers().Get("ce-id"), seq: meta.Sequence.Stream, data: body.Data})
			if meta.Sequence.Stream >= last {
				return out, nil
			}
		}
		if got == 0 {
			if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
				return out, err
			}
			return out, fmt.Errorf("SIGNALS ended at %d of %d", len(out), last-from)
		}
	}
}

// stateSample is a connector's state in Redis at one moment.
type stateSample struct {
	at       time.Time
	cursor   string
	lastPoll string
}

// sampler reads every benign connector's cursor and last poll from Redis
// five times a second, and the services' memory.
type sampler struct {
	mu      sync.Mutex
	samples map[string][]stateSample
	rssMax  map[string]int // service id -> largest VmRSS seen, KiB
	stop    context.CancelFunc
	done    chan struct{}
}

func (s *stack) startSampler() *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	sm := &sampler{samples: map[string][]stateSample{}, rssMax: map[string]int{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(sm.done)
		client := s.redisClient()
		defer client.Close()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			s.mu.Lock()
			services := append([]*svc(nil), s.services...)
			s.mu.Unlock()
			for _, sv := range services {
				if sv.p.Exited() {
					continue
				}
				if rss, _ := sv.rssKB(); rss > 0 {
					sm.mu.Lock()
					sm.rssMax[sv.kind+"-"+sv.id] = max(sm.rssMax[sv.kind+"-"+sv.id], rss)
					sm.mu.Unlock()
				}
			}
			rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			pipe := client.Pipeline()
			cmds := make(map[string]*redisHMGet, len(s.names))
			for _, n := range s.names {
				cmds[n] = &redisHMGet{pipe.HMGet(rctx, "pollgrid:{"+n+"}:state", "cursor", "last_poll")}
			}
			_, err := pipe.Exec(rctx)
			rcancel()
			if err != nil && !isNil(err) {
				continue // Redis away: nothing to sample
			}
			now := time.Now()
			sm.mu.Lock()
			for n, c := range cmds {
				vals := c.Val()
				sm.samples[n] = append(sm.samples[n], stateSample{at: now, cursor: str(vals, 0), lastPoll: str(vals, 1)})
			}
			sm.mu.Unlock()
		}
	}()
	return sm
}

func (sm *sampler) close() { sm.stop(); <-sm.done }

// resetRSS forgets the memory peaks, to measure one scenario's.
func (sm *sampler) resetRSS() {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	sm.rssMax = map[string]int{}
}

func (sm *sampler) rss(prefix string) int {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	top := 0
	for id, v := range sm.rssMax {
		if strings.HasPrefix(id, prefix) {
			top = max(top, v)
		}
	}
	return top
}

// regressions counts, within [from, to], samples of a field that went below
// the largest value seen before them, and resets to empty (data lost).
func (sm *sampler) regressions(from, to time.Time, field func(stateSample) string) (back int, worst time.Duration, resets int, examples []string) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	for name, samples := range sm.samples {
		var top int64
		for _, smp := range samples {
			v := field(smp)
			if v == "" {
				if top > 0 && !smp.at.Before(from) && !smp.at.After(to) {
					resets++
				}
				top = 0 // lost with Redis's data: a new history starts
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				continue
			}
			if n < top && !smp.at.Before(from) && !smp.at.After(to) {
				back++
				d := time.Duration(top-n) * time.Millisecond
				if d > worst {
					worst = d
				}
				if len(examples) < 3 {
					examples = append(examples, fmt.Sprintf("%s %d -> %d", name, top, n))
				}
			}
			top = max(top, n)
		}
	}
	slices.Sort(examples)
	return back, worst, resets, examples
}

type redisHMGet struct {
	cmd interface{ Val() []any }
}

func (h *redisHMGet) Val() []any { return h.cmd.Val() }

func str(vals []any, i int) string {
	if i < len(vals) {
		if s, ok := vals[i].(string); ok {
			return s
		}
	}
	return ""
}

func isNil(err error) bool { return err != nil && err.Error() == "redis: nil" }
