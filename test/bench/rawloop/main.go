// Command rawloop is the baseline of the end-to-end benchmark: the cycle a
// pollgrid poll does, written by hand with no framework, so that the
// benchmark can say what pollgrid costs on top of the job itself.
//
// With -role ticker it offers -rate ticks per second over core NATS,
// round-robin over -connectors connectors. With -role worker it takes
// those ticks (a queue group shared by every worker process) on
// -concurrency goroutines, and per tick: one Lua EVALSHA takes the
// connector's lease and returns its state, an HTTP GET fetches the
// upstream's /items/<i>, the JSON is decoded and the item's version read,
// a changed item is published to JetStream on signals.raw.<i> (waiting for
// the PubAck), and one Lua EVALSHA saves the state and releases the lease.
// A tick that finds every goroutine busy is dropped (core NATS, like a
// coalesced tick). Counters go to standard output every few seconds.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

const (
	tickSubject = "bench.rawtick"
	queueGroup  = "rawloop"
	leaseTTL    = 30 * time.Second
)

// acquireLua takes the lease when free and returns the stored version.
//
//	KEYS: lease state   ARGV: owner ttl_ms   -> {1, version} or {0}
const acquireLua = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('HGET', KEYS[2], 'version') or ''}
end
return {0}
`

// saveLua stores the version and releases the lease, if still ours.
//
//	KEYS: lease state   ARGV: owner version   -> 1 saved, 0 lease lost
const saveLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('HSET', KEYS[2], 'version', ARGV[2])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`

type options struct {
	role        string
	natsURL     string
	redisURL    string
	upstream    string
	connectors  int
	rate        int
	concurrency int
	id          string
}

func main() {
	var o options
	flag.StringVar(&o.role, "role", "worker", "ticker or worker")
	flag.StringVar(&o.natsURL, "nats", nats.DefaultURL, "NATS URL")
	flag.StringVar(&o.redisURL, "redis", "redis://127.0.0.1:6379/0", "Redis URL (worker)")
	flag.StringVar(&o.upstream, "upstream", "http://127.0.0.1:8090", "upstream base URL (worker)")
	flag.IntVar(&o.connectors, "connectors", 10_000, "connectors, /items/0 to /items/<n-1>")
	flag.IntVar(&o.rate, "rate", 10_000, "ticks offered per second (ticker)")
	flag.IntVar(&o.concurrency, "concurrency", 32, "cycles at once (worker)")
	flag.StringVar(&o.id, "id", "raw-"+strconv.Itoa(os.Getpid()), "lease owner prefix (worker)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	nc, err := nats.Connect(o.natsURL, nats.Name("rawloop-"+o.role))
	if err != nil {
		log.Fatalf("rawloop: nats: %v", err)
	}
	defer nc.Close()
	switch o.role {
	case "ticker":
		err = tick(ctx, nc, o)
	case "worker":
		err = work(ctx, nc, o)
	default:
		err = fmt.Errorf("-role %q: want ticker or worker", o.role)
	}
	if err != nil && ctx.Err() == nil {
		log.Fatalf("rawloop %s: %v", o.role, err)
	}
}

// tick publishes rate ticks per second, paced every 5 ms, never bursting
// more than one second's worth to catch up.
func tick(ctx context.Context, nc *nats.Conn, o options) error {
	start := time.Now()
	pace := time.NewTicker(5 * time.Millisecond)
	defer pace.Stop()
	report := time.NewTicker(5 * time.Second)
	defer report.Stop()
	var sent int64
	next := 0
	buf := make([]byte, 0, 16)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-report.C:
			fmt.Printf("ticker sent=%d\n", sent)
		case <-pace.C:
			due := int64(time.Since(start).Seconds() * float64(o.rate))
			if due-sent > int64(o.rate) {
				sent = due - int64(o.rate)
			}
			for ; sent < due; sent++ {
				buf = strconv.AppendInt(buf[:0], int64(next), 10)
				if err := nc.Publish(tickSubject, buf); err != nil {
					return err
				}
				next = (next + 1) % o.connectors
			}
		}
	}
}

type counters struct {
	cycles, published, skipped, dropped, errors atomic.Int64
}

func work(ctx context.Context, nc *nats.Conn, o options) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ropts, err := redis.ParseURL(o.redisURL)
	if err != nil {
		return err
	}
	ropts.PoolSize = o.concurrency + 4
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	// One connection per goroutine, kept alive: the pool is sized to the
	// concurrency, as any hand-written client would be.
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns: o.concurrency * 2, MaxIdleConnsPerHost: o.concurrency * 2, IdleConnTimeout: 90 * time.Second,
		},
	}
	w := &worker{o: o, js: js, rdb: rdb, http: client,
		acquire: redis.NewScript(acquireLua), save: redis.NewScript(saveLua)}

	ticks := make(chan int, o.concurrency)
	sub, err := nc.QueueSubscribe(tickSubject, queueGroup, func(m *nats.Msg) {
		i, err := strconv.Atoi(string(m.Data))
		if err != nil {
			w.c.errors.Add(1)
			return
		}
		select {
		case ticks <- i:
		default:
			w.c.dropped.Add(1)
		}
	})
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return err
	}
	for range o.concurrency {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case i := <-ticks:
					w.cycle(ctx, i)
				}
			}
		}()
	}
	fmt.Println("rawloop worker ready")
	report := time.NewTicker(5 * time.Second)
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-report.C:
			fmt.Printf("worker cycles=%d published=%d skipped=%d dropped=%d errors=%d\n",
				w.c.cycles.Load(), w.c.published.Load(), w.c.skipped.Load(), w.c.dropped.Load(), w.c.errors.Load())
		}
	}
}

type worker struct {
	o       options
	js      jetstream.JetStream
	rdb     *redis.Client
	http    *http.Client
	acquire *redis.Script
	save    *redis.Script
	seq     atomic.Uint64
	c       counters
}

type page struct {
	Items []json.RawMessage `json:"items"`
}

type item struct {
	ID      json.RawMessage `json:"id"`
	Version json.RawMessage `json:"version"`
}

func (w *worker) cycle(ctx context.Context, i int) {
	n := strconv.Itoa(i)
	keys := []string{"raw:" + n + ":lease", "raw:" + n + ":state"}
	owner := w.o.id + ":" + strconv.FormatUint(w.seq.Add(1), 10)
	res, err := w.acquire.Run(ctx, w.rdb, keys, owner, leaseTTL.Milliseconds()).Slice()
	if err != nil {
		w.fail("acquire", err)
		return
	}
	if ok, _ := res[0].(int64); ok == 0 {
		w.c.skipped.Add(1)
		return
	}
	stored, _ := res[1].(string)
	version, err := w.poll(ctx, n, stored)
	if err != nil {
		w.fail("poll", err)
		version = stored
	}
	if err := w.save.Run(ctx, w.rdb, keys, owner, version).Err(); err != nil {
		w.fail("save", err)
		return
	}
	w.c.cycles.Add(1)
}

// poll fetches the connector's items and publishes the changed ones; it
// returns the version to store.
func (w *worker) poll(ctx context.Context, n, stored string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.o.upstream+"/items/"+n, nil)
	if err != nil {
		return "", err
	}
	resp, err := w.http.Do(req)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("upstream: %s", resp.Status)
	}
	var p page
	if err := json.Unmarshal(body, &p); err != nil {
		return "", err
	}
	version := stored
	for _, raw := range p.Items {
		var it item
		if err := json.Unmarshal(raw, &it); err != nil {
			return "", err
		}
		v := string(it.Version)
		if v == stored {
			continue
		}
		msg := nats.NewMsg("signals.raw." + n)
		msg.Header.Set(nats.MsgIdHdr, "raw-"+n+":"+string(it.ID)+":"+v)
		msg.Data = raw
		if _, err := w.js.PublishMsg(ctx, msg); err != nil {
			return "", err
		}
		w.c.published.Add(1)
		version = v
	}
	return version, nil
}

var lastLog atomic.Int64

func (w *worker) fail(step string, err error) {
	w.c.errors.Add(1)
	// At most one line a second: a broken dependency must not flood stderr.
	if now := time.Now().Unix(); lastLog.Swap(now) != now {
		log.Printf("rawloop worker: %s: %v", step, err)
	}
}
