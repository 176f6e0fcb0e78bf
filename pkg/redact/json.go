package redact

import (
	"bytes"
	"encoding/json"
)

// JSON returns data, a JSON document such as an item a connector turned
// into a signal's data, with every secret inside its strings (object keys
// included) replaced by Mask. An upstream that echoes a credential (a 200
// body quoting the request's token) would otherwise publish it to every
// consumer of the signals.
//
// A secret is found however the upstream escaped it ("s3\u0063ret" is
// "s3cret"), and the result is valid JSON whenever data is. Numbers, true,
// false and null are left alone. data with no secret in it is returned as
// is, without a copy; the scan is linear in len(data).
func (r *Redactor) JSON(data []byte) []byte {
	set := r.load()
	if set.replacer == nil || (!set.containsAny(data) && bytes.IndexByte(data, '\\') < 0) {
		return data
	}
	var out []byte // nil until a string changes
	last := 0
	for i := 0; i < len(data); i++ {
		if data[i] != '"' {
			continue
		}
		end, escaped := quotedEnd(data, i)
		if redacted, changed := set.quoted(data[i:end], escaped); changed {
			out = append(out, data[last:i]...)
			out = append(out, redacted...)
			last = end
		}
		i = end - 1
	}
	if out == nil {
		return data
	}
	return append(out, data[last:]...)
}

// containsAny reports whether any secret appears in b as written.
func (s *secretSet) containsAny(b []byte) bool {
	for _, v := range s.values {
		if bytes.Contains(b, v) {
			return true
		}
	}
	return false
}

// quoted redacts one JSON string literal, quotes included. Without escapes
// its bytes are its text, and Mask needs no escaping, so it is redacted in
// place; with escapes it is decoded, redacted and encoded again.
func (s *secretSet) quoted(lit []byte, escaped bool) ([]byte, bool) {
	if !escaped {
		if !s.containsAny(lit) {
			return lit, false
		}
		return []byte(s.replacer.Replace(string(lit))), true
	}
	var text string
	if json.Unmarshal(lit, &text) != nil {
		// Not a valid string: leave it for the JSON check downstream,
		// but never let a secret through as it is.
		if s.containsAny(lit) {
			return []byte(`"` + Mask + `"`), true
		}
		return lit, false
	}
	redacted := s.replacer.Replace(text)
	if redacted == text {
		return lit, false
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(redacted) // a Go string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), true
}

// quotedEnd returns the index just past the string literal starting at
// data[i], and whether it holds an escape.
func quotedEnd(data []byte, i int) (end int, escaped bool) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return len(data), escaped
}
