package admin

import "encoding/json"

// AppendRaw appends raw, valid JSON, as json.Marshal writes a
// json.RawMessage (compacted, with <, >, &, U+2028 and U+2029 escaped). It
// copies raw as it is when that is what json.Marshal would write, as it is
// of nearly every connector's definition: those are sent, and checked, by
// the 100,000 in a file, and json.Marshal would scan each one again.
func AppendRaw(b []byte, raw json.RawMessage) ([]byte, error) {
	if asMarshaled(raw) {
		return append(b, raw...), nil
	}
	written, err := json.Marshal(raw)
	if err != nil {
		return b, err
	}
	return append(b, written...), nil
}

// asMarshaled says whether json.Marshal writes raw, valid JSON, as it is:
// compact, and without what it escapes (<, >, & and U+2028 and U+2029,
// whose UTF-8 starts with 0xE2).
func asMarshaled(raw json.RawMessage) bool {
	inString := false
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '<', c == '>', c == '&', c == 0xE2:
			return false
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return len(raw) > 0
}

// encode writes an apply request as json.Marshal does, its connectors
// copied (AppendRaw): they are definitions a file's check passed.
func (r ApplyRequest) encode() ([]byte, error) {
	size := len(`{"connectors":[],"dry_run":true}`) + len(r.Connectors)
	for _, c := range r.Connectors {
		size += len(c)
	}
	b := append(make([]byte, 0, size), `{"connectors":`...)
	if r.Connectors == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, c := range r.Connectors {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = AppendRaw(b, c); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	if len(r.Budgets) > 0 {
		budgets, err := json.Marshal(r.Budgets)
		if err != nil {
			return nil, err
		}
		b = append(append(b, `,"budgets":`...), budgets...)
	}
	if r.DryRun {
		b = append(b, `,"dry_run":true`...)
	}
	return append(b, '}'), nil
}
