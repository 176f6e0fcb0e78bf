package admin

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// ShortError shortens an error's text to at most maxRunes runes for a list
// row, keeping its cause. An error reads "context: context: cause", each
// wrap adding a label in front ("poll noaa-ca: nws alerts: Get https://…:
// outbound guard refused to connect to …"), so cutting its end keeps the
// labels and loses the cause. ShortError drops leading labels instead, as
// few as it must, marking the drop with "…"; when the cause alone is still
// too long it cuts the cause's end. The text is folded onto one line first.
//
// A label is a leading part of at most four words; the last two parts are
// always kept together, since the last is often a description of the one
// before it ("dial tcp 10.0.0.1:443: connection refused"). Separators inside
// quotes, parentheses or brackets do not split.
func ShortError(msg string, maxRunes int) string {
	msg = strings.Join(strings.Fields(msg), " ")
	if maxRunes <= 1 || utf8.RuneCountInString(msg) <= maxRunes {
		return msg
	}
	parts := errorParts(msg)
	cause := len(parts) - 1
	for i, p := range parts[:len(parts)-1] {
		if len(strings.Fields(p)) > 4 {
			cause = i
			break
		}
	}
	cause = max(0, min(cause, len(parts)-2))
	// Drop as few labels as the width asks.
	for k := 1; k <= cause; k++ {
		rest := strings.Join(parts[k:], ": ")
		if utf8.RuneCountInString(rest)+1 <= maxRunes {
			return "…" + rest
		}
	}
	rest := strings.Join(parts[cause:], ": ")
	if cause == 0 {
		return cutEnd(rest, maxRunes)
	}
	return "…" + cutEnd(rest, maxRunes-1)
}

// errorParts splits msg at each ": " outside quotes, parentheses and
// brackets.
func errorParts(msg string) []string {
	var parts []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(msg); i++ {
		switch c := msg[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '(' || c == '[' || c == '{':
			depth++
		case (c == ')' || c == ']' || c == '}') && depth > 0:
			depth--
		case c == ':' && depth == 0 && i+1 < len(msg) && msg[i+1] == ' ':
			parts = append(parts, msg[start:i])
			start = i + 2
			i++
		}
	}
	return append(parts, msg[start:])
}

// cutEnd keeps the first n-1 runes of s and marks the cut with "…".
func cutEnd(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return strings.TrimRight(string(r[:max(0, n-1)]), " ") + "…"
}

// ShortDuration writes d as a person glances at it, in one unit, rounded
// down: "42s", "5m", "17h", "3d" (hours up to two days).
func ShortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
