package config

import (
	"fmt"
	"strings"

	"github.com/pollgrid/pollgrid/pkg/redact"
)

// Problem is one thing wrong with a config.
type Problem struct {
	// Path is the JSON path of the field, such as "connectors[0].interval",
	// or the environment variable it came from. It is empty for a problem
	// with the whole source, whose Message then names the source itself.
	Path string
	// Message says what is wrong and how to fix it.
	Message string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Problems is the error returned for an invalid config: every problem
// found, in the order of the source.
type Problems struct {
	// Source names where the config came from, such as "connectors.json".
	Source string
	List   []Problem
	// redactor holds the secrets resolved so far. Messages are written so
	// that they never quote a resolved value; redacting again guards
	// against messages we do not write, such as a type's Validate error.
	redactor *redact.Redactor
}

func (p *Problems) Error() string {
	if len(p.List) == 1 && p.List[0].Path == "" {
		return p.redactor.String(p.List[0].Message)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s:", p.Source, plural(len(p.List), "problem"))
	for _, problem := range p.List {
		b.WriteString("\n  ")
		b.WriteString(problem.String())
	}
	return p.redactor.String(b.String())
}

// add records a problem at path; an empty path means the whole source.
func (p *Problems) add(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path == "" {
		msg = p.Source + ": " + msg
	}
	p.List = append(p.List, Problem{Path: path, Message: msg})
}

// err returns p as an error, with every message redacted against secrets,
// or nil when there is nothing to report.
func (p *Problems) err(secrets []string) error {
	if len(p.List) == 0 {
		return nil
	}
	p.redactor = redact.New(secrets...)
	for i := range p.List {
		p.List[i].Message = p.redactor.String(p.List[i].Message)
	}
	return p
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
