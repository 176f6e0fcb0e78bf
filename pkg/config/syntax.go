package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// decodeJSON decodes data keeping numbers exact (json.Number), reporting a
// syntax error with its line and column and every duplicated key, under
// path (empty for a whole file, or a name such as "CONNECTOR_CONFIG").
// It returns false when data is not JSON at all.
func decodeJSON(data []byte, path string, problems *Problems) (any, bool) {
	if !checkSyntax(data, path, problems) {
		return nil, false
	}
	var tree any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	_ = dec.Decode(&tree) // cannot fail: data is valid JSON
	return tree, true
}

// checkSyntax reports a syntax error with its line and column, or every
// duplicated key, under path. It returns false when data is not JSON at all.
func checkSyntax(data []byte, path string, problems *Problems) bool {
	if !json.Valid(data) {
		// Unmarshal says what is wrong the way people know it (and where).
		err := json.Unmarshal(data, new(any))
		offset := int64(len(data))
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			offset = syntax.Offset
		}
		line, column := position(data, offset)
		problems.add(path, "not valid JSON at line %d, column %d: %s", line, column, err)
		return false
	}
	dups, invalid := scanStrings(data)
	for _, dup := range dups {
		problems.add(join(path, dup.path), "duplicate key %q (second one at line %d)", dup.key, dup.line)
	}
	for _, bad := range invalid {
		what := "is not valid UTF-8"
		if bad.key {
			what = "has a key that is not valid UTF-8"
		}
		problems.add(join(path, bad.path), "%s (line %d, column %d: save the file as UTF-8)", what, bad.line, bad.column)
	}
	return len(invalid) == 0
}

// position turns a byte offset into a 1-based line and column, pointing at
// the byte just before offset, which is the one the decoder choked on.
func position(data []byte, offset int64) (line, column int) {
	before := data[:min(offset, int64(len(data)))]
	line = bytes.Count(before, []byte("\n")) + 1
	column = len(before) - bytes.LastIndexByte(before, '\n') - 1
	return line, max(column, 1)
}

type duplicate struct {
	path string // the object holding the key
	key  string
	line int
}

// invalidText is a string that is not valid UTF-8, which encoding/json
// would silently turn into U+FFFD.
type invalidText struct {
	path         string // the value's path, or the object's for a key
	key          bool
	line, column int
}

// duplicateKeys finds the keys repeated within one object of valid JSON.
func duplicateKeys(data []byte) []duplicate {
	dups, _ := scanStrings(data)
	return dups
}

// scanStrings finds the keys repeated within one object of valid JSON,
// which encoding/json silently keeps the last of, and the strings that are
// not valid UTF-8. It reads the bytes once, keeps only the keys of the
// objects it is inside, and builds a path only for a problem, so its time
// and memory grow with the size of data and not with its depth.
func scanStrings(data []byte) ([]duplicate, []invalidText) {
	var stack []container
	var found []duplicate
	var invalid []invalidText
	// Nearly every file is valid UTF-8 throughout, which one look tells.
	allValid := utf8.Valid(data)
	for i := 0; i < len(data); {
		switch data[i] {
		case '{':
			stack = push(stack, container{object: true, expectKey: true})
		case '[':
			stack = push(stack, container{})
		case '}', ']':
			stack = stack[:len(stack)-1]
		case ',':
			if top := &stack[len(stack)-1]; top.object {
				top.expectKey = true
			} else {
				top.index++
			}
		case '"':
			end := stringEnd(data, i)
			if !allValid && !utf8.Valid(data[i:end]) {
				top := len(stack) - 1
				isKey := top >= 0 && stack[top].object && stack[top].expectKey
				at := pathOf(stack)
				if isKey {
					at = pathOf(stack[:top])
				}
				line, column := position(data, int64(i+1))
				invalid = append(invalid, invalidText{path: at, key: isKey, line: line, column: column})
			}
			if top := len(stack) - 1; top >= 0 && stack[top].object && stack[top].expectKey {
				c := &stack[top]
				key := keyOf(data[i:end])
				if c.seen(key) {
					line, _ := position(data, int64(end))
					found = append(found, duplicate{path: pathOf(stack[:top]), key: string(key), line: line})
				}
				c.key, c.expectKey = key, false
			}
			i = end
			continue
		}
		i++
	}
	return found, invalid
}

// container is an object or array duplicateKeys is inside.
type container struct {
	object    bool
	expectKey bool                // an object's next string is a key
	index     int                 // an array's current element
	key       []byte              // an object's current key
	keys      [][]byte            // an object's first keys
	many      map[string]struct{} // and all of them once there are many
}

// push enters a container, reusing the slice of keys the last container
// at its depth had: a file holds a great many small objects side by side.
func push(stack []container, c container) []container {
	if len(stack) < cap(stack) {
		c.keys = stack[:len(stack)+1][len(stack)].keys[:0]
	}
	return append(stack, c)
}

// seen records an object's key and reports whether it came before. Small
// objects (nearly all) compare a few slices; a large one gets a set, so a
// million keys cost a million lookups, not a million squared.
func (c *container) seen(key []byte) bool {
	if c.many != nil {
		if _, ok := c.many[string(key)]; ok {
			return true
		}
		c.many[string(key)] = struct{}{}
		return false
	}
	for _, k := range c.keys {
		if bytes.Equal(k, key) {
			return true
		}
	}
	c.keys = append(c.keys, key)
	if len(c.keys) > 32 {
		c.many = make(map[string]struct{}, 2*len(c.keys))
		for _, k := range c.keys {
			c.many[string(k)] = struct{}{}
		}
		c.keys = nil
	}
	return false
}

// pathOf is the path of the value the innermost of the containers holds:
// connectors[0].config.auth.
func pathOf(containers []container) string {
	var b strings.Builder
	for _, c := range containers {
		switch {
		case !c.object:
			fmt.Fprintf(&b, "[%d]", c.index)
		case b.Len() > 0:
			b.WriteByte('.')
			fallthrough
		default:
			b.Write(c.key)
		}
	}
	return b.String()
}

// stringEnd returns the index just past the string that starts at data[i].
func stringEnd(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(data)
}

// objectFields splits a file that checkSyntax passed into its top-level
// fields, as json.Unmarshal into a map[string]json.RawMessage does (null
// is no fields, a key written twice keeps its last value), but reading the
// bytes once and copying none: a file holds 100,000 connectors. It is false
// when data is not an object.
func objectFields(data []byte) (map[string]json.RawMessage, bool) {
	if i := skipSpace(data, 0); i < len(data) && data[i] == 'n' {
		return nil, true
	}
	fields := map[string]json.RawMessage{}
	if !eachField(data, func(key []byte, value json.RawMessage) { fields[string(key)] = value }) {
		return nil, false
	}
	return fields, true
}

// listItems splits a list of valid JSON into its items, copying none. It
// is false when raw is not a list.
func listItems(raw []byte) ([]json.RawMessage, bool) {
	i := skipSpace(raw, 0)
	if i == len(raw) || raw[i] != '[' {
		return nil, false
	}
	var items []json.RawMessage
	for i = skipSpace(raw, i+1); i < len(raw) && raw[i] != ']'; i = skipSpace(raw, i+1) {
		end := valueEnd(raw, i)
		items = append(items, raw[i:end:end])
		if i = skipSpace(raw, end); i == len(raw) || raw[i] != ',' {
			break
		}
	}
	return items, true
}

// valueEnd returns the index just past the value of valid JSON that starts
// at data[i].
func valueEnd(data []byte, i int) int {
	switch data[i] {
	case '"':
		return stringEnd(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				j = stringEnd(data, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(data)
	}
	j := i
	for j < len(data) && !isDelimiter(data[j]) {
		j++
	}
	return j
}

// isDelimiter is a byte that ends a number, true, false or null.
func isDelimiter(b byte) bool {
	switch b {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// keyOf is the text of a quoted key; only one with escapes is decoded.
func keyOf(quoted []byte) []byte {
	if len(quoted) < 2 {
		return nil // a string cut short, in a file at a glance (Names)
	}
	if bytes.IndexByte(quoted, '\\') < 0 {
		return quoted[1 : len(quoted)-1]
	}
	var s string
	_ = json.Unmarshal(quoted, &s) // valid JSON: cannot fail
	return []byte(s)
}

// join appends a key to a JSON path: join("connectors[0]", "interval").
func join(path, key string) string {
	if path == "" {
		return key
	}
	if key == "" {
		return path
	}
	if key[0] == '[' {
		return path + key
	}
	return path + "." + key
}
