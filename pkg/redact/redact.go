// Package redact keeps secrets out of text that leaves the process: log
// records, error messages, span attributes.
//
// A Redactor holds the current set of secret values (the ones a config
// resolved from ${VAR}) and replaces them with [REDACTED]. The set can be
// replaced at any time (Set: the config hot-reloads), or grown (Add: a
// worker resolves a connector's secrets when it reads its definition).
package redact

import (
	"slices"
	"strings"
	"sync/atomic"
)

// Mask replaces every secret.
const Mask = "[REDACTED]"

// Redactor replaces known secret values in text. It is safe for concurrent
// use, and a nil *Redactor is a valid no-op.
type Redactor struct {
	current atomic.Pointer[secretSet]
}

// secretSet is immutable once built; Set and Add swap in a new one.
type secretSet struct {
	replacer *strings.Replacer // nil when there are no secrets
	values   [][]byte          // the secrets, longest first
	// generation grows on every Set and Add, so a log handler can tell that
	// attributes it prepared earlier must be redacted again.
	generation uint64
}

// New returns a Redactor for secrets.
func New(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Set(secrets)
	return r
}

// Set replaces the secret set. Empty strings are ignored; short values are
// still redacted, because a short secret is still a secret.
func (r *Redactor) Set(secrets []string) {
	if r == nil {
		return
	}
	r.current.Store(build(secrets, r.current.Load()))
}

// build makes the set of secrets that follows old (nil: the first).
func build(secrets []string, old *secretSet) *secretSet {
	values := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if s != "" {
			values = append(values, s)
		}
	}
	// Longest first: strings.Replacer tries its pairs in order at each
	// position, so "abcd" must come before "ab" or "cd" would leak.
	slices.SortFunc(values, func(a, b string) int { return len(b) - len(a) })
	values = slices.Compact(values)

	next := &secretSet{}
	if old != nil {
		next.generation = old.generation + 1
	}
	if len(values) > 0 {
		pairs := make([]string, 0, 2*len(values))
		for _, v := range values {
			pairs = append(pairs, v, Mask)
		}
		next.replacer = strings.NewReplacer(pairs...)
		for _, v := range values {
			next.values = append(next.values, []byte(v))
		}
	}
	return next
}

// Add adds secrets to the set, keeping those it holds: a worker learns
// a connector's secrets when it first reads its definition, long after
// the process started. Adding only secrets already held changes nothing,
// so that the hot path (a cached definition's secrets added again) costs
// a look-up, not a new replacer.
func (r *Redactor) Add(secrets ...string) {
	if r == nil {
		return
	}
	for {
		old := r.current.Load()
		var held [][]byte
		if old != nil {
			held = old.values
		}
		var fresh []string
		for _, s := range secrets {
			if s != "" && !slices.ContainsFunc(held, func(v []byte) bool { return string(v) == s }) {
				fresh = append(fresh, s)
			}
		}
		if len(fresh) == 0 {
			return
		}
		all := make([]string, 0, len(held)+len(fresh))
		for _, v := range held {
			all = append(all, string(v))
		}
		next := build(append(all, fresh...), old)
		if r.current.CompareAndSwap(old, next) {
			return
		}
		// A concurrent Set or Add won: add to what it stored.
	}
}

// String returns s with every secret replaced by Mask.
func (r *Redactor) String(s string) string {
	set := r.load()
	if set.replacer == nil {
		return s
	}
	return set.replacer.Replace(s)
}

// Error returns an error whose text is redacted. errors.Is and errors.As
// still see the original, so callers can keep checking sentinels.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := r.String(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

func (r *Redactor) load() *secretSet {
	if r == nil {
		return &secretSet{}
	}
	if set := r.current.Load(); set != nil {
		return set
	}
	return &secretSet{}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
