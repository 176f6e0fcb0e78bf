package connector

import (
	"fmt"
	"strings"
)

// CheckSecret checks a required credential of a config (a token, an API
// key) without ever putting it in the error: missing, a ${VAR} reference
// left unresolved, or whitespace and control characters (a trailing newline
// from the environment is the usual one). howToSet ends the "required"
// error, e.g. `write "${SLACK_TOKEN}" and set that variable to a bot token`.
func CheckSecret(field, value, howToSet string) error {
	switch {
	case value == "":
		return fmt.Errorf("%s: required: %s", field, howToSet)
	case strings.HasPrefix(value, "${"):
		return fmt.Errorf("%s: the ${VAR} reference was not resolved: set that environment variable for the worker", field)
	case strings.ContainsFunc(value, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("%s: contains whitespace or control characters (often a trailing newline in the environment variable)", field)
	}
	return nil
}

// CutText cuts s to at most maxRunes runes, for an item's text field (a
// message, release notes): a signal is not an archive. It reports whether
// it cut.
func CutText(s string, maxRunes int) (string, bool) {
	count := 0
	for i := range s {
		if count == maxRunes {
			return s[:i], true
		}
		count++
	}
	return s, false
}

// SetDefault gives an optional config field (a pointer, so that a written
// 0 or false is not taken for "left out") its default when it was left out:
//
//	connector.SetDefault(&c.MaxPages, DefaultMaxPages)
func SetDefault[T any](field **T, value T) {
	if *field == nil {
		*field = &value
	}
}
