package scheduler

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// Phase is the connector's fixed offset within its interval, whole seconds
// in [0, interval): its ticks fire at phase, phase + interval, ... It comes
// from the name alone, so every replica computes the same one, a reinstall
// never moves a connector's ticks, and many connectors with one interval
// spread evenly over it instead of firing in the same second.
//
// Phases are whole seconds: nats-server fires a repeating schedule only on
// whole seconds (server/scheduler.go, parseMsgSchedule: "@every" rounds each
// next fire to the second; cron has no finer field), and a fire's
// Nats-Schedule-Next, from which a tick's intended time is read, is that
// second. Only the one-shot "@at" takes a fraction, and a repeating schedule
// made of one-shots is one publish per tick. So 100,000 connectors at 10 s
// fire 10,000 ticks at each second.
func Phase(name string, interval time.Duration) time.Duration {
	secs := uint64(interval / time.Second)
	if secs <= 1 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return time.Duration(h.Sum64()%secs) * time.Second
}

// Spec is the NATS message-schedule expression that fires a connector's
// ticks every interval at its Phase. Intervals that divide a minute, an hour
// or a day become a 6-field cron expression in UTC (seconds first), which
// pins the phase whenever the schedule is (re)installed; any other interval
// becomes "@every <interval>", whose phase is set by when it is installed.
func Spec(name string, interval time.Duration) string {
	p := Phase(name, interval)
	s, m, h := int(p/time.Second)%60, int(p/time.Minute)%60, int(p/time.Hour)
	switch {
	case interval%time.Second == 0 && interval < time.Minute && time.Minute%interval == 0:
		if interval == time.Second {
			return "* * * * * *"
		}
		return fmt.Sprintf("%d/%d * * * * *", s, interval/time.Second)
	case interval%time.Minute == 0 && interval < time.Hour && time.Hour%interval == 0:
		if interval == time.Minute {
			return fmt.Sprintf("%d * * * * *", s)
		}
		return fmt.Sprintf("%d %d/%d * * * *", s, m, interval/time.Minute)
	case interval%time.Hour == 0 && interval <= 24*time.Hour && 24*time.Hour%interval == 0:
		if interval == time.Hour {
			return fmt.Sprintf("%d %d * * * *", s, m)
		}
		return fmt.Sprintf("%d %d %d/%d * * *", s, m, h, interval/time.Hour)
	}
	return "@every " + interval.String()
}

// definition is one connector's message schedule as stored in TICKS: a
// message on its schedule subject whose headers tell NATS when to fire and
// where, and whose body is the tick NATS publishes each time.
type definition struct {
	subject string
	spec    string
	target  string
	body    []byte
	// every is the interval of an "@every" spec, 0 for cron.
	every time.Duration
}

func newDefinition(d catalog.Defined) (definition, error) {
	body, err := bus.EncodeTick(tickOf(d))
	if err != nil {
		return definition{}, fmt.Errorf("schedule %s: %w", d.Name, err)
	}
	def := definition{
		subject: bus.ScheduleSubject(d.Type, d.Name),
		spec:    Spec(d.Name, d.Interval),
		target:  bus.TickSubject(d.Type, d.Name),
		body:    body,
	}
	if strings.HasPrefix(def.spec, "@every ") {
		def.every = d.Interval
	}
	return def, nil
}

// tickOf is the tick a connector's schedule fires. It carries the
// definition's revision and its budget's sharers, so that any change of
// either changes the body, and the schedule is installed again.
func tickOf(d catalog.Defined) *pollgridv1.Tick {
	return &pollgridv1.Tick{
		Connector: d.Name, ConnectorType: d.Type, Interval: durationpb.New(d.Interval),
		Revision: d.Revision, BudgetSharers: uint32(max(0, d.Budget.Connectors)),
	}
}

// definitionOf reads a definition back from a stored message.
func definitionOf(m *jetstream.RawStreamMsg) definition {
	return definition{
		subject: m.Subject,
		spec:    m.Header.Get(jetstream.ScheduleHeader),
		target:  m.Header.Get(jetstream.ScheduleTargetHeader),
		body:    m.Data,
	}
}

func (d definition) equal(o definition) bool {
	return d.subject == o.subject && d.spec == o.spec && d.target == o.target && bytes.Equal(d.body, o.body)
}

func (d definition) msg() *nats.Msg {
	m := nats.NewMsg(d.subject)
	m.Header.Set(jetstream.ScheduleHeader, d.spec)
	m.Header.Set(jetstream.ScheduleTargetHeader, d.target)
	m.Data = d.body
	return m
}

// removal is a schedule to delete, with the tick it may have pending.
type removal struct{ schedule, tick string }

func (d definition) removal() removal { return removal{schedule: d.subject, tick: d.target} }

// connectorOf is the connector a schedule subject is of: its last token.
func connectorOf(subject string) string { return subject[strings.LastIndexByte(subject, '.')+1:] }
