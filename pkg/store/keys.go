package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Keys is pollgrid's Redis key layout, shared by every package that keeps
// something in Redis (store, history, leader), so that the prefix and the
// hash tag are written in one place.
type Keys struct {
	// Prefix starts every key, so that several deployments can share one
	// Redis.
	Prefix string
}

// NewKeys returns the layout under prefix, DefaultPrefix when it is "".
func NewKeys(prefix string) Keys {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Keys{Prefix: prefix}
}

// Connector names one of a connector's keys, "<prefix>:{<name>}:<suffix>".
// The braces make the name the Redis Cluster hash tag, so all of a
// connector's keys live in one slot and one Lua script may touch them all.
// Check the name with CheckName first.
func (k Keys) Connector(name, suffix string) string {
	return k.Prefix + ":{" + name + "}:" + suffix
}

// Global names a key of the whole deployment, "<prefix>:<name>", in a slot
// of its own.
func (k Keys) Global(name string) string { return k.Prefix + ":" + name }

// CheckName rejects connector names that would break the hash tag (and so
// the one-slot guarantee the scripts rely on).
func CheckName(name string) error {
	if name == "" {
		return errors.New("empty connector name")
	}
	if strings.ContainsAny(name, "{}") {
		return fmt.Errorf("connector name %q contains a brace: use letters, digits, - and _", name)
	}
	return nil
}

// formatTime writes a time field: unix milliseconds in decimal, "" for the
// zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// ParseTime reads a time field as pollgrid stores it: unix milliseconds in
// decimal; "" (a missing field) is the zero time.
func ParseTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("not unix milliseconds: %q", v)
	}
	return time.UnixMilli(ms).UTC(), nil
}
