package githubapi

import (
	"strings"
)

// nextLink returns the URI-Reference of the first link whose rel includes
// "next" in the Link header values (RFC 8288), unchanged.
//
// A URI ends at the '>' that is followed by ';', ',' or the end (spaces
// allowed between), not at the first '>': recorded GitHub answers carry
// redaction placeholders such as ".../<GITHUB_TEST_REPOSITORY>/releases",
// and a comma inside a URL (labels=bug,ui) must not split a link either.
func nextLink(values []string) (string, bool) {
	for _, v := range values {
		for _, l := range parseLinks(v) {
			for _, rel := range strings.Fields(l.rel) {
				if strings.EqualFold(rel, "next") {
					return l.uri, true
				}
			}
		}
	}
	return "", false
}

type link struct {
	uri string
	rel string
}

func parseLinks(s string) []link {
	var links []link
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
			i++
		}
		if i >= len(s) || s[i] != '<' {
			return links
		}
		end := uriEnd(s, i+1)
		if end < 0 {
			return links
		}
		l := link{uri: strings.TrimSpace(s[i+1 : end])}
		i = end + 1
		// Parameters: ; name[=value] ... up to a ',' outside quotes.
		for {
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			if i >= len(s) || s[i] != ';' {
				break
			}
			i++
			nameStart := i
			for i < len(s) && s[i] != '=' && s[i] != ';' && s[i] != ',' {
				i++
			}
			name := strings.TrimSpace(s[nameStart:i])
			value := ""
			if i < len(s) && s[i] == '=' {
				i++
				for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
					i++
				}
				value, i = paramValue(s, i)
			}
			if strings.EqualFold(name, "rel") && l.rel == "" {
				l.rel = value
			}
		}
		links = append(links, l)
		// Skip anything unexpected up to the next link.
		for i < len(s) && s[i] != ',' {
			i++
		}
	}
}

// uriEnd returns the index of the '>' closing a URI that starts at from, or -1.
func uriEnd(s string, from int) int {
	for j := from; j < len(s); j++ {
		if s[j] != '>' {
			continue
		}
		k := j + 1
		for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
			k++
		}
		if k == len(s) || s[k] == ';' || s[k] == ',' {
			return j
		}
	}
	return -1
}

// paramValue reads a quoted-string (with backslash escapes) or a token.
func paramValue(s string, i int) (string, int) {
	if i < len(s) && s[i] == '"' {
		var b strings.Builder
		for i++; i < len(s); i++ {
			switch s[i] {
			case '\\':
				if i+1 < len(s) {
					i++
					b.WriteByte(s[i])
				}
			case '"':
				return b.String(), i + 1
			default:
				b.WriteByte(s[i])
			}
		}
		return b.String(), i
	}
	start := i
	for i < len(s) && s[i] != ';' && s[i] != ',' {
		i++
	}
	return strings.TrimSpace(s[start:i]), i
}
