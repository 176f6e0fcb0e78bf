package config

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The readers here take JSON that checkSyntax passed (valid, UTF-8) and
// read it in one pass, without encoding/json's scanner: a file of 100,000
// connectors is read by each process that checks it, and json.Decoder
// first copies each connector into a buffer of its own, then steps a state
// machine through every byte.

// readTree decodes one value of valid JSON into the tree a json.Decoder
// with UseNumber makes: map[string]any (a key written twice keeps its last
// value), []any (never nil), string, json.Number, bool and nil.
func readTree(data []byte) any {
	v, _ := treeValue(data, skipSpace(data, 0))
	return v
}

// treeValue decodes the value at data[i] and returns the index past it.
func treeValue(data []byte, i int) (any, int) {
	switch data[i] {
	case '{':
		obj := map[string]any{}
		for i = skipSpace(data, i+1); data[i] == '"'; {
			end := stringEnd(data, i)
			key := stringOf(data[i:end])
			i = skipSpace(data, skipSpace(data, end)+1) // past the ':'
			obj[key], i = treeValue(data, i)
			if i = skipSpace(data, i); data[i] == ',' {
				i = skipSpace(data, i+1)
			}
		}
		return obj, i + 1 // past the '}'
	case '[':
		list := make([]any, 0)
		for i = skipSpace(data, i+1); data[i] != ']'; {
			var item any
			item, i = treeValue(data, i)
			list = append(list, item)
			if i = skipSpace(data, i); data[i] == ',' {
				i = skipSpace(data, i+1)
			}
		}
		return list, i + 1
	case '"':
		end := stringEnd(data, i)
		return stringOf(data[i:end]), end
	case 't':
		return true, i + len("true")
	case 'f':
		return false, i + len("false")
	case 'n':
		return nil, i + len("null")
	}
	end := valueEnd(data, i)
	return json.Number(data[i:end]), end
}

// stringOf is the text of a quoted JSON string, decoded as encoding/json
// decodes it; only one with escapes (or not UTF-8) goes through it.
func stringOf(quoted []byte) string {
	if len(quoted) < 2 {
		return "" // a string cut short, in a file at a glance (Names)
	}
	inner := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner)
	}
	var s string
	_ = json.Unmarshal(quoted, &s) // valid JSON: cannot fail
	return s
}

// eachField hands fn each key and value of an object of valid JSON, in
// order, copying none; false when data is not an object. Of data that is
// not JSON it reads something, never past its end.
func eachField(data []byte, fn func(key []byte, value json.RawMessage)) bool {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return false
	}
	for i = skipSpace(data, i+1); i < len(data) && data[i] == '"'; i = skipSpace(data, i+1) {
		end := stringEnd(data, i)
		key := keyOf(data[i:end])
		if i = skipSpace(data, skipSpace(data, end)+1); i >= len(data) { // past the ':'
			break
		}
		end = valueEnd(data, i)
		fn(key, data[i:end:end])
		if i = skipSpace(data, end); i == len(data) || data[i] != ',' {
			break
		}
	}
	return true
}

// isCompact reports whether valid JSON has no space between its tokens:
// json.Compact would return it as it is.
func isCompact(data []byte) bool {
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			return false
		case '"':
			i = stringEnd(data, i) - 1
		}
	}
	return true
}

// compacted is data compacted, data itself when it is compact already:
// for reading, not for keeping.
func compacted(data []byte) []byte {
	if isCompact(data) {
		return data
	}
	return compact(data)
}
