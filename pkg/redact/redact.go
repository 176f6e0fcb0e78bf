// Package redact keeps secrets out of text that leaves the process: log
// records, error messages, span attributes.
//
// A Redactor holds the current set of secret values (the ones a config
// resolved from ${VAR}) and replaces them with [REDACTED]. The set can be
// replaced at any time, because the config hot-reloads.
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

// secretSet is immutable once built; Set swaps in a new one.
type secretSet struct {
	replacer *strings.Replacer // nil when there are no secrets
	values   [][]byte          // the secrets, longest first
	// generation grows on every Set, so a log handler can tell that
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
	if old := r.current.Load(); old != nil {
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
	r.current.Store(next)
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
