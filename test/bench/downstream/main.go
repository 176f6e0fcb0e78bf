// Command downstream is the user's side of the end-to-end benchmark: the
// application that reads the signals, run the way docs/operate.md tells a
// consumer to read them, through one durable JetStream pull consumer of its
// own on SIGNALS (filter signals.>), acknowledging every message. It reads
// and acknowledges; it does not parse a body (that work is the user's own,
// the same whatever produced the signal). It is a process of its own so
// that the benchmark reads its CPU from /proc like every other process's;
// what it has read is the consumer's state on the server (its ack floor),
// and its counters go to standard output every few seconds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	natsURL := flag.String("nats", nats.DefaultURL, "NATS URL")
	stream := flag.String("stream", "SIGNALS", "the stream to read")
	durable := flag.String("durable", "downstream", "the durable consumer's name")
	filter := flag.String("filter", "signals.>", "the subjects to read")
	wait := flag.Duration("wait", 3*time.Minute, "how long to wait for the stream to exist")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *natsURL, *stream, *durable, *filter, *wait); err != nil && ctx.Err() == nil {
		log.Fatalf("downstream: %v", err)
	}
}

func run(ctx context.Context, url, streamName, durable, filter string, wait time.Duration) error {
	nc, err := nats.Connect(url, nats.Name("bench-downstream"))
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// The services (or the raw loop's test) create the stream: wait for it.
	var stream jetstream.Stream
	for deadline := time.Now().Add(wait); ; {
		stream, err = js.Stream(ctx, streamName)
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) || time.Now().After(deadline) {
			return fmt.Errorf("stream %s: %w", streamName, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       durable,
		FilterSubject: filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", durable, streamName, err)
	}
	var read, bytes, ackErrors atomic.Int64
	cc, err := cons.Consume(func(m jetstream.Msg) {
		read.Add(1)
		bytes.Add(int64(len(m.Data())))
		if err := m.Ack(); err != nil {
			ackErrors.Add(1)
		}
	})
	if err != nil {
		return err
	}
	defer cc.Stop()
	fmt.Println("downstream ready")
	report := time.NewTicker(5 * time.Second)
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-report.C:
			fmt.Printf("downstream read=%d bytes=%d ack_errors=%d\n", read.Load(), bytes.Load(), ackErrors.Load())
		}
	}
}
