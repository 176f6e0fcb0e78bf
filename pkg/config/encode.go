package config

import (
	"encoding/json"
	"slices"
	"sync"
)

// encodeJSON is json.Marshal for a tree decoded from JSON (appendJSON).
func encodeJSON(v any) ([]byte, error) {
	buf := buffers.Get().(*[]byte)
	out, err := appendJSON((*buf)[:0], v)
	encoded := slices.Clone(out)
	*buf = out
	buffers.Put(buf)
	return encoded, err
}

// buffers hold what encodeJSON writes before its exact-size copy.
var buffers = sync.Pool{New: func() any { return new([]byte) }}

// appendJSON appends v, a tree decoded from JSON (objects, lists,
// strings, json.Number, bools, null), to b exactly as json.Marshal writes
// it: keys sorted, no spaces. Each connector's config is written once and
// most of its strings need no escaping; json.Marshal writes everything
// else, and sorting a map's keys through reflection costs it about ten
// allocations per connector, which a file of 100,000 connectors feels.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return append(b, "null"...), nil
		}
		keys := make([]string, 0, len(x))
		for key := range x {
			keys = append(keys, key)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, key := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, key); err != nil {
				return b, err
			}
			b = append(b, ':')
			if b, err = appendJSON(b, x[key]); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	case []any:
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, item := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, item); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case string:
		if plain(x) {
			b = append(b, '"')
			b = append(b, x...)
			return append(b, '"'), nil
		}
	case bool:
		if x {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case nil:
		return append(b, "null"...), nil
	}
	encoded, err := json.Marshal(v)
	return append(b, encoded...), err
}

// plain reports whether json.Marshal writes s as it is, between quotes:
// printable ASCII without '"', '\\' or the HTML characters it escapes.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
