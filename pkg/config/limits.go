package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pollgrid/pollgrid/pkg/jsondepth"
)

// Defaults of Limits.
const (
	// DefaultMaxBytes caps a connectors file: 100,000 connectors take
	// about 20 MB of memory to hold, and a few times that to check.
	DefaultMaxBytes = 16 << 20
	// DefaultMaxDepth caps nesting: a connectors file needs four levels
	// for itself and a type's config rarely more than ten.
	DefaultMaxDepth = 100
)

// Limits bound what a config may cost, checked before it is parsed: a
// config is an attack surface (a file written by a tool gone wrong, a
// ConfigMap anyone in a namespace may edit), and a service must never run
// out of memory reading one, at start or on SIGHUP.
type Limits struct {
	// MaxBytes caps the size of a connectors file and of CONNECTOR_CONFIG
	// (CONFIG_MAX_BYTES, in bytes or with a KiB, MiB or GiB suffix);
	// default 16 MiB.
	MaxBytes int64
	// MaxDepth caps how deep objects and lists nest (CONFIG_MAX_DEPTH);
	// default 100.
	MaxDepth int
}

// LimitsFrom reads CONFIG_MAX_BYTES and CONFIG_MAX_DEPTH, with defaults.
func LimitsFrom(env Env) (Limits, error) {
	l := Limits{MaxBytes: DefaultMaxBytes, MaxDepth: DefaultMaxDepth}
	if v, _ := env.lookup("CONFIG_MAX_BYTES"); strings.TrimSpace(v) != "" {
		n, err := parseBytes(v)
		if err != nil || n < 1<<10 {
			return l, fmt.Errorf("CONFIG_MAX_BYTES=%q: want a size of at least 1KiB, in bytes or such as 64MiB", v)
		}
		l.MaxBytes = n
	}
	if v, _ := env.lookup("CONFIG_MAX_DEPTH"); strings.TrimSpace(v) != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 8 || n > 10_000 {
			return l, fmt.Errorf("CONFIG_MAX_DEPTH=%q: want a whole number from 8 to 10000", v)
		}
		l.MaxDepth = n
	}
	return l, nil
}

func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	unit := int64(1)
	for suffix, u := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if rest, ok := strings.CutSuffix(s, suffix); ok {
			s, unit = strings.TrimSpace(rest), u
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/unit {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	return n * unit, nil
}

// showBytes writes a size the way the limit is usually set: 16 MiB.
func showBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// checkSize reports data over the size cap.
func (l Limits) checkSize(size int64, what string, problems *Problems, path string) bool {
	if size <= l.MaxBytes {
		return true
	}
	fix := "raise CONFIG_MAX_BYTES"
	if what == "the file" {
		fix = "apply a file this large with pollctl apply -f, which has no size limit, and run the services without CONNECTORS_FILE; or " + fix
	}
	problems.add(path, "%s is %d bytes, over the limit of %s (%s)", what, size, showBytes(l.MaxBytes), fix)
	return false
}

// checkDepth reports where nesting first passes the cap, before anything
// parses data.
func (l Limits) checkDepth(data []byte, problems *Problems, path string) bool {
	i := jsondepth.Over(data, l.MaxDepth)
	if i < 0 {
		return true
	}
	line, column := position(data, int64(i+1))
	problems.add(path, "nests deeper than %d levels at line %d, column %d (flatten it, or raise CONFIG_MAX_DEPTH)",
		l.MaxDepth, line, column)
	return false
}
