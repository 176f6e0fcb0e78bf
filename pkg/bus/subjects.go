package bus

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// Subject prefixes (docs/connector-framework.md, "NATS").
const (
	TickPrefix     = "pollgrid.tick"
	SchedulePrefix = "pollgrid.schedule"
	SignalPrefix   = "signals"
	ReportPrefix   = "pollgrid.reports"
	AdminPrefix    = "pollgrid.admin"
)

// ResyncSubject is where a scheduler replica that paused or resumed a
// connector asks the leader to compare the schedules with the config now.
const ResyncSubject = "pollgrid.scheduler.resync"

var tokenRE = regexp.MustCompile(`^[a-z0-9_-]+$`)

// ValidToken reports whether s can be one NATS subject token of ours:
// lowercase letters, digits, "-" and "_".
func ValidToken(s string) bool { return tokenRE.MatchString(s) }

// TickSubject is pollgrid.tick.<type>.<name>.
func TickSubject(typeName, name string) string { return TickPrefix + "." + typeName + "." + name }

// SignalSubject is signals.<type>.<name>.
func SignalSubject(typeName, name string) string {
	return SignalPrefix + "." + typeName + "." + name
}

// ScheduleSubject is pollgrid.schedule.<type>.<name>, where the connector's
// message schedule (the definition NATS fires ticks from) is kept.
func ScheduleSubject(typeName, name string) string {
	return SchedulePrefix + "." + typeName + "." + name
}

// ReportSubject is pollgrid.reports.<worker>, where a worker publishes its
// batches of poll reports; worker is made a valid token (other characters
// become "-").
func ReportSubject(worker string) string {
	return ReportPrefix + "." + token(worker)
}

func token(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// Filter restricts a worker to some connector types and/or names. The zero
// Filter takes every tick.
type Filter struct {
	Types []string
	Names []string
}

// Subjects returns the tick subjects the filter selects. A consumer must
// always filter: TICKS also holds the schedule definitions, which a
// consumer on a work-queue stream would delete.
func (f Filter) Subjects() []string {
	if len(f.Types) == 0 && len(f.Names) == 0 {
		return []string{TickPrefix + ".>"}
	}
	var subs []string
	for _, t := range f.Types {
		subs = append(subs, TickSubject(t, "*"))
	}
	for _, n := range f.Names {
		subs = append(subs, TickSubject("*", n))
	}
	return subs
}

// Validate checks every type and name is a subject token.
func (f Filter) Validate() error {
	for _, t := range f.Types {
		if !ValidToken(t) {
			return fmt.Errorf("worker type filter %q is not a valid type name", t)
		}
	}
	for _, n := range f.Names {
		if !ValidToken(n) {
			return fmt.Errorf("worker name filter %q is not a valid connector name", n)
		}
	}
	return nil
}

// ConsumerName is the durable consumer shared by every worker with the same
// filter: "workers" for all ticks, "workers-<types/names>" otherwise.
func (f Filter) ConsumerName() string {
	if len(f.Types) == 0 && len(f.Names) == 0 {
		return "workers"
	}
	subs := f.Subjects()
	name := "workers-" + strings.Join(append(append([]string{}, f.Types...), f.Names...), "-")
	if len(name) > 48 {
		sum := sha256.Sum256([]byte(strings.Join(subs, ",")))
		name = "workers-" + hex.EncodeToString(sum[:6])
	}
	return name
}
