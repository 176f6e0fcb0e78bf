// Package jsondepth finds where a JSON document nests deeper than a cap
// before anything parses it: a scan of the brackets outside strings that is
// linear and allocates nothing, so a hostile document never reaches a
// decoder. The config loader and the upstream response checks both use it.
package jsondepth

// Over returns the offset of the first '[' or '{' that opens level max+1,
// or -1 when data never nests deeper than max.
func Over(data []byte, max int) int {
	depth, inString, escaped := 0, false, false
	for i, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			if depth > max {
				return i
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return -1
}
