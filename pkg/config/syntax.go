package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// decodeJSON decodes data keeping numbers exact (json.Number), reporting a
// syntax error with its line and column and every duplicated key, under
// path (empty for a whole file, or a name such as "CONNECTOR_CONFIG").
// It returns false when data is not JSON at all.
func decodeJSON(data []byte, path string, problems *Problems) (any, bool) {
	// Unmarshal first: its errors carry the offset, and it rejects
	// trailing data after the value.
	if err := json.Unmarshal(data, new(any)); err != nil {
		offset := int64(len(data))
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			offset = syntax.Offset
		}
		line, column := position(data, offset)
		problems.add(path, "not valid JSON at line %d, column %d: %s", line, column, err)
		return nil, false
	}
	for _, dup := range duplicateKeys(data) {
		problems.add(join(path, dup.path), "duplicate key %q (second one at line %d)", dup.key, dup.line)
	}
	var tree any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	_ = dec.Decode(&tree) // cannot fail: Unmarshal accepted it
	return tree, true
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

// duplicateKeys walks valid JSON token by token, because encoding/json
// silently keeps the last of two equal keys.
func duplicateKeys(data []byte) []duplicate {
	w := keyWalker{dec: json.NewDecoder(bytes.NewReader(data)), data: data}
	_ = w.value("") // data is known to be valid JSON
	return w.found
}

type keyWalker struct {
	dec   *json.Decoder
	data  []byte
	found []duplicate
}

func (w *keyWalker) value(path string) error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for w.dec.More() {
			tok, err := w.dec.Token()
			if err != nil {
				return err
			}
			key, _ := tok.(string)
			if seen[key] {
				line, _ := position(w.data, w.dec.InputOffset())
				w.found = append(w.found, duplicate{path: path, key: key, line: line})
			}
			seen[key] = true
			if err := w.value(join(path, key)); err != nil {
				return err
			}
		}
	case json.Delim('['):
		for i := 0; w.dec.More(); i++ {
			if err := w.value(fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	default:
		return nil // a scalar
	}
	_, err = w.dec.Token() // the closing delimiter
	return err
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
