package httpjson

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"unicode"

	"github.com/itchyny/gojq"

	"github.com/pollgrid/pollgrid/pkg/connector"
)

// jq is one compiled expression. Environment variables are not visible to
// it ($ENV and env are empty): they hold the secrets. Compiled expressions
// are shared (see shared): thousands of connectors written from one
// template use a handful of them.
//
// An expression that is a plain path of object keys (".items", ".id",
// ".properties.updated", or "." alone), as most connectors' are, also
// keeps its keys: run looks them up itself while each step meets an object
// or null, which yields what jq yields without starting jq's machine (its
// run allocates a stack and scopes each time). Any other input runs the
// compiled code, so errors are jq's own.
type jq struct {
	code *gojq.Code
	path []string // the keys of a plain path (empty for "."), nil otherwise
}

// compileJQ parses and compiles one expression.
func compileJQ(src string) (*jq, error) {
	return jqCode.get(src, func() (*jq, error) {
		q, err := gojq.Parse(src)
		if err != nil {
			return nil, err
		}
		code, err := gojq.Compile(q, gojq.WithEnvironLoader(func() []string { return nil }))
		if err != nil {
			return nil, err
		}
		return &jq{code: code, path: plainPath(src)}, nil
	})
}

var jqCode shared[jq]

// plainPathRE is a path of object keys as jq writes them without quotes.
var plainPathRE = regexp.MustCompile(`^\s*(\.|(\.[A-Za-z_][A-Za-z0-9_]*)+)\s*$`)

// plainPath is the keys of src when it is a plain path, else nil.
func plainPath(src string) []string {
	if !plainPathRE.MatchString(src) {
		return nil
	}
	return strings.FieldsFunc(src, func(r rune) bool { return r == '.' || unicode.IsSpace(r) })
}

// run yields the expression's outputs for v.
func (q *jq) run(ctx context.Context, v any) gojq.Iter {
	if q.path != nil {
		if out, ok := q.lookup(v); ok {
			return &single{v: out}
		}
	}
	return q.code.RunWithContext(ctx, v)
}

// lookup follows a plain path through objects; null yields null, as in jq.
// It is false when a step meets anything else (jq's error is then jq's to
// write).
func (q *jq) lookup(v any) (any, bool) {
	for _, key := range q.path {
		switch o := v.(type) {
		case map[string]any:
			v = o[key]
		case nil:
		default:
			return nil, false
		}
	}
	return v, true
}

// single is an iterator over one value.
type single struct {
	v    any
	done bool
}

func (s *single) Next() (any, bool) {
	if s.done {
		return nil, false
	}
	s.done = true
	return s.v, true
}

// runItems runs the items expression: an array contributes its elements,
// an object is one item; anything else fails the poll.
func (p *poller) runItems(ctx context.Context, doc any) ([]any, error) {
	var items []any
	iter := p.ex.items.run(ctx, doc)
	for n := 0; ; n++ {
		v, ok := iter.Next()
		if !ok {
			return items, nil
		}
		switch v := v.(type) {
		case error:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if halt, ok := v.(*gojq.HaltError); ok && halt.Value() == nil {
				return items, nil
			}
			return nil, fmt.Errorf("items: jq: %w", v)
		case []any:
			items = append(items, v...)
		case map[string]any:
			items = append(items, v)
		default:
			return nil, fmt.Errorf("items: output %d is %s, not an array or an object (check the expression against the response; "+
				"to let an odd element fail alone, yield the array itself, e.g. \".features\" instead of \".features[]\")",
				n, describeValue(v))
		}
	}
}

// toItem runs the per-item expressions. The returned time is nil when the
// item has none (no time expression, or it yielded null, "" or nothing). An ItemError is named by the item's id when it could be
// read, else by its position across the poll's pages.
func (p *poller) toItem(ctx context.Context, v any, position int) (connector.Item, *mark, *connector.ItemError) {
	where := fmt.Sprintf("items[%d]", position)
	fail := func(id string, err error) (connector.Item, *mark, *connector.ItemError) {
		if id == "" {
			id = where
		}
		return connector.Item{}, nil, &connector.ItemError{ID: id, Err: err}
	}
	idValue, err := runOne(ctx, p.ex.id, v)
	if err != nil {
		return fail("", fmt.Errorf("id: %w", err))
	}
	id, err := scalarText(idValue)
	if err != nil {
		return fail("", fmt.Errorf("id: %w", err))
	}

	var version string
	if p.ex.version == nil {
		version = hashJSON(v)
	} else {
		versionValue, err := runOne(ctx, p.ex.version, v)
		if err != nil {
			return fail(id, fmt.Errorf("%s: version: %w", where, err))
		}
		switch versionValue.(type) {
		case string, json.Number, int, float64, *big.Int, nil:
			if version, err = scalarText(versionValue); err != nil {
				return fail(id, fmt.Errorf("%s: version: %w", where, err))
			}
		default:
			// An object or array (".properties | {updated, status}"): its hash.
			version = hashJSON(versionValue)
		}
	}

	var t *mark
	if p.ex.time != nil {
		timeValue, err := runOne(ctx, p.ex.time, v)
		switch {
		case errors.Is(err, errNoOutput):
		case err != nil:
			return fail(id, fmt.Errorf("%s: time: %w", where, err))
		default:
			m, ok, err := p.cursor.readItem(timeValue)
			if err != nil {
				return fail(id, fmt.Errorf("%s: time: %w", where, err))
			}
			if ok {
				t = &m
			}
		}
	}

	data := v
	if p.ex.data != nil {
		if data, err = runOne(ctx, p.ex.data, v); err != nil {
			return fail(id, fmt.Errorf("%s: data: %w", where, err))
		}
	}
	encoded, err := gojq.Marshal(data)
	if err != nil {
		return fail(id, fmt.Errorf("%s: data: %w", where, err))
	}
	return connector.Item{ID: id, Version: version, Data: encoded}, t, nil
}

var errNoOutput = errors.New("yields nothing (jq's empty)")

// runOne runs a per-item expression that must yield exactly one value.
func runOne(ctx context.Context, q *jq, v any) (any, error) {
	iter := q.run(ctx, v)
	first, ok := iter.Next()
	if !ok {
		return nil, errNoOutput
	}
	if err, isErr := first.(error); isErr {
		if halt, ok := err.(*gojq.HaltError); ok && halt.Value() == nil {
			return nil, errNoOutput
		}
		return nil, fmt.Errorf("jq: %w", err)
	}
	if second, more := iter.Next(); more {
		if err, isErr := second.(error); isErr {
			if halt, ok := err.(*gojq.HaltError); !ok || halt.Value() != nil {
				return nil, fmt.Errorf("jq: %w", err)
			}
		} else {
			return nil, errors.New("yields more than one value (pick one, e.g. first(...), or collect them with [...])")
		}
	}
	return first, nil
}

// scalarText is an id or version as text: a non-empty string, or a number
// written as jq writes it (the same as jq's tostring).
func scalarText(v any) (string, error) {
	switch v := v.(type) {
	case string:
		if v == "" {
			return "", errors.New("yields an empty string")
		}
		return v, nil
	case json.Number, int, float64, *big.Int:
		b, err := gojq.Marshal(v)
		return string(b), err
	default:
		return "", fmt.Errorf("yields %s; want a non-empty string or a number", describeValue(v))
	}
}

// hashJSON is the sha256 of v's canonical JSON: object keys sorted, no
// spaces, numbers as the upstream wrote them.
func hashJSON(v any) string {
	b, _ := gojq.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func describeValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("a boolean (%t)", v)
	case string:
		return "a string"
	case json.Number, int, float64, *big.Int:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("a %T", v)
	}
}
