package httpjson

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Cursor kinds: what the time expression yields, and so how cursors compare.
const (
	// CursorTime is an RFC 3339 time, any offset, compared as an instant.
	// A cursor (initial_cursor) may also be relative, as Datadog writes it:
	// "now-15m".
	CursorTime = "time"
	// CursorNumber is a number (Unix milliseconds, a sequence), compared by
	// value with every digit.
	CursorNumber = "number"
	// CursorString is an opaque string, compared byte by byte.
	CursorString = "string"
)

var cursorKinds = []string{CursorTime, CursorNumber, CursorString}

// relativeTime is a time counted back from the poll's start: "now" or
// "now-<n><s|m|h|d|w>".
var relativeTime = regexp.MustCompile(`^now(?:-([1-9][0-9]*)([smhdw]))?$`)

// decimalNumber is a number as JSON writes one; big.Rat alone would also
// take "1/2" and hex.
var decimalNumber = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)

var unitOf = map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}

// cursorRule reads item times and cursors by the configured kind. Its kind
// is "" when the config has no time expression.
type cursorRule struct {
	kind         string
	timeMargin   time.Duration
	numberMargin *big.Rat
}

// mark is a cursor or an item's time, read by kind.
type mark struct {
	// text is as the upstream wrote it (or as stored): the cursor keeps it,
	// so that {{cursor}} sends the upstream its own format back.
	text     string
	instant  time.Time // kind time
	number   *big.Rat  // kind number
	relative bool      // "now-15m"
}

// cursorRule checks cursor_kind, cursor_margin and initial_cursor together.
func (c Config) cursorRule() (cursorRule, []error) {
	rule := cursorRule{kind: c.CursorKind}
	var errs []error
	switch {
	case c.Time == "" && c.CursorKind != "":
		errs = append(errs, errors.New("config.cursor_kind: has no effect without time (set time, or remove cursor_kind)"))
	case c.Time != "" && c.CursorKind == "":
		errs = append(errs, errors.New(`config.cursor_kind: required with time: say what time yields and how cursors compare `+
			`(write "time" for RFC 3339 times, "number" or "string")`))
	case c.CursorKind != "" && !slices.Contains(cursorKinds, c.CursorKind):
		return rule, errs // the spec reports it
	}
	if c.CursorMargin != "" {
		switch rule.kind {
		case CursorTime:
			d, err := time.ParseDuration(c.CursorMargin)
			if err != nil || d < 0 {
				errs = append(errs, fmt.Errorf(`config.cursor_margin: %q is not a duration (write e.g. "1m" or "90s")`, c.CursorMargin))
			}
			rule.timeMargin = d
		case CursorNumber:
			n, ok := readNumber(c.CursorMargin)
			if !ok || n.Sign() < 0 {
				errs = append(errs, fmt.Errorf(`config.cursor_margin: %q is not a number of 0 or more (write e.g. "60000" for a minute of Unix milliseconds)`, c.CursorMargin))
			}
			rule.numberMargin = n
		case CursorString:
			errs = append(errs, errors.New(`config.cursor_margin: strings have no margin (cursor_kind is "string"; remove cursor_margin)`))
		default:
			errs = append(errs, errors.New("config.cursor_margin: has no effect without time and cursor_kind (remove it)"))
		}
	}
	if c.InitialCursor != "" && rule.kind != "" {
		if _, err := rule.readCursor(c.InitialCursor, time.Now()); err != nil {
			errs = append(errs, fmt.Errorf("config.initial_cursor: %w", err))
		}
	}
	return rule, errs
}

func readNumber(s string) (*big.Rat, bool) {
	if !decimalNumber.MatchString(s) {
		return nil, false
	}
	return new(big.Rat).SetString(s)
}

// readCursor reads a stored cursor or initial_cursor; a relative time counts
// back from now.
func (r cursorRule) readCursor(text string, now time.Time) (mark, error) {
	m := mark{text: text}
	switch r.kind {
	case CursorTime:
		if rel := relativeTime.FindStringSubmatch(text); rel != nil {
			n, _ := strconv.Atoi(cmp.Or(rel[1], "0"))
			m.instant, m.relative = now.Add(-time.Duration(n)*unitOf[cmp.Or(rel[2], "s")]), true
			return m, nil
		}
		t, err := time.Parse(time.RFC3339Nano, text)
		if err != nil {
			return mark{}, fmt.Errorf(`%q is not an RFC 3339 time or "now-<n><s|m|h|d|w>" (cursor_kind is "time")`, text)
		}
		m.instant = t
	case CursorNumber:
		n, ok := readNumber(text)
		if !ok {
			return mark{}, fmt.Errorf(`%q is not a number (cursor_kind is "number")`, text)
		}
		m.number = n
	}
	return m, nil
}

// readItem reads what the time expression yielded for one item; ok=false
// when it yielded null or "" (the item does not move the cursor).
func (r cursorRule) readItem(v any) (m mark, ok bool, err error) {
	switch v := v.(type) {
	case nil:
		return mark{}, false, nil
	case string:
		if v == "" {
			return mark{}, false, nil
		}
		if r.kind == CursorTime && relativeTime.MatchString(v) {
			return mark{}, false, fmt.Errorf(`yields %q, a relative time; an item's time must be absolute`, v)
		}
		m, err := r.readCursor(v, time.Time{})
		return m, err == nil, err
	case json.Number, int, float64, *big.Int:
		text, err := scalarText(v)
		if err != nil {
			return mark{}, false, err
		}
		if r.kind != CursorNumber {
			return mark{}, false, fmt.Errorf(`yields a number (%s); cursor_kind is %q (write cursor_kind "number")`, text, r.kind)
		}
		m, err := r.readCursor(text, time.Time{})
		return m, err == nil, err
	default:
		return mark{}, false, fmt.Errorf("yields %s; want a %s as cursor_kind says", describeValue(v), r.kind)
	}
}

// after reports whether a is later than b, by kind.
func (r cursorRule) after(a, b mark) bool {
	switch r.kind {
	case CursorTime:
		return a.instant.After(b.instant)
	case CursorNumber:
		return a.number.Cmp(b.number) > 0
	default:
		return a.text > b.text
	}
}

// request is what {{cursor}} becomes: the cursor less the margin, written
// as the kind writes it (a time in RFC 3339 UTC); a relative time, an empty
// cursor or one that does not read is sent as it is.
func (r cursorRule) request(cursor string) string {
	if cursor == "" || (r.timeMargin == 0 && (r.numberMargin == nil || r.numberMargin.Sign() == 0)) {
		return cursor
	}
	m, err := r.readCursor(cursor, time.Time{})
	if err != nil || m.relative {
		return cursor
	}
	if r.kind == CursorTime {
		return m.instant.Add(-r.timeMargin).UTC().Format(time.RFC3339Nano)
	}
	less := new(big.Rat).Sub(m.number, r.numberMargin)
	return less.FloatString(max(decimals(cursor), decimals(less.FloatString(9))))
}

// decimals is how many digits a plain decimal has after its point (none
// for an exponent form, which the margin arithmetic writes out).
func decimals(number string) int {
	_, frac, ok := strings.Cut(number, ".")
	if !ok || strings.ContainsAny(number, "eE") {
		return 0
	}
	return len(strings.TrimRight(frac, "0"))
}

// next is the cursor after a poll whose greatest item time is newest, from
// floor, the cursor the poll started from
// (stored, else initial_cursor). The cursor never moves back; a floor that
// no longer reads by kind (the kind was changed) gives way.
func (r cursorRule) next(floor string, newest mark, now time.Time) (cursor string, dropped error) {
	if floor == "" {
		return newest.text, nil
	}
	old, err := r.readCursor(floor, now)
	if err != nil {
		return newest.text, err
	}
	if r.after(newest, old) {
		return newest.text, nil
	}
	return floor, nil
}
