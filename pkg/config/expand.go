package config

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// expand resolves the ${VAR} references in s from env. "$${" stands for a
// literal "${". It returns the values it substituted: they are secrets.
// Errors name the variable, never a value.
func expand(s string, env Env) (string, []string, error) {
	if !strings.Contains(s, "${") {
		return s, nil, nil
	}
	var out strings.Builder
	var values []string
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			out.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", nil, fmt.Errorf(`"${" is not closed (write ${NAME}, or $${ for a literal "${")`)
			}
			name := s[i+2 : i+2+end]
			if !validVarName(name) {
				return "", nil, fmt.Errorf(`${%s} is not a valid variable name (use letters, digits and "_")`, name)
			}
			value, ok := env.lookup(name)
			if !ok {
				return "", nil, fmt.Errorf(`environment variable %s is not set (export it, or write $${ for a literal "${")`, name)
			}
			if !utf8.ValidString(value) {
				return "", nil, fmt.Errorf(`environment variable %s is not valid UTF-8 (set it to text)`, name)
			}
			out.WriteString(value)
			values = append(values, value)
			i += 2 + end + 1
		default:
			out.WriteByte(s[i])
			i++
		}
	}
	return out.String(), values, nil
}

func validVarName(name string) bool {
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for _, c := range name {
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
