package upstream

import (
	"net/http"
	"strings"
)

// Link is one link-value of an RFC 8288 Link header.
type Link struct {
	// Target is the URI-Reference between < and >, as sent: it may be
	// relative (Atlassian sends "/wiki/api/v2/...").
	Target string
	// Rel lists the relation types, e.g. ["next"] or ["last", "next"].
	Rel []string
}

// HasRel reports whether the link has the relation type rel (case-insensitive).
func (l Link) HasRel(rel string) bool {
	for _, r := range l.Rel {
		if strings.EqualFold(r, rel) {
			return true
		}
	}
	return false
}

// NextLink returns the target of the first rel="next" link in h's Link
// headers, as sent; "" when there is none. Resolve it with NextPage.
func NextLink(h http.Header) string {
	for _, l := range ParseLinks(h.Values("Link")) {
		if l.HasRel("next") {
			return l.Target
		}
	}
	return ""
}

// ParseLinks reads Link header values (one or several header lines, each a
// comma-separated list). A target ends at the '>' that is followed by ';',
// ',' or the end (spaces allowed between), not at the first '>': recorded
// GitHub answers carry placeholders such as ".../<GITHUB_TEST_REPOSITORY>/...",
// and a comma inside a URL ("labels=bug,ui") must not split a link either.
// Parameter values may be quoted, with ',' and ';' inside. Anything that
// does not parse ends the list; what was read so far is returned.
func ParseLinks(values []string) []Link {
	var links []Link
	for _, v := range values {
		links = append(links, parseLinkValue(v)...)
	}
	return links
}

func parseLinkValue(s string) []Link {
	var links []Link
	i := 0
	for {
		i = skip(s, i, " \t,")
		if i >= len(s) || s[i] != '<' {
			return links
		}
		end := targetEnd(s, i+1)
		if end < 0 {
			return links
		}
		link := Link{Target: strings.TrimSpace(s[i+1 : end])}
		i = end + 1
		rel := ""
		for {
			i = skip(s, i, " \t")
			if i >= len(s) || s[i] != ';' {
				break
			}
			var name, value string
			name, value, i = linkParam(s, i+1)
			if strings.EqualFold(name, "rel") && rel == "" {
				rel = value // RFC 8288 §3.3: only the first rel counts
			}
		}
		link.Rel = strings.Fields(rel)
		links = append(links, link)
		for i < len(s) && s[i] != ',' {
			i++ // skip what is not understood, up to the next link
		}
	}
}

func skip(s string, i int, chars string) int {
	for i < len(s) && strings.IndexByte(chars, s[i]) >= 0 {
		i++
	}
	return i
}

// targetEnd returns the index of the '>' closing a target that starts at
// from, or -1.
func targetEnd(s string, from int) int {
	for j := from; j < len(s); j++ {
		if s[j] != '>' {
			continue
		}
		if k := skip(s, j+1, " \t"); k == len(s) || s[k] == ';' || s[k] == ',' {
			return j
		}
	}
	return -1
}

// linkParam reads "name[=value]" from i, the value a token or a
// quoted-string with backslash escapes.
func linkParam(s string, i int) (name, value string, next int) {
	start := i
	for i < len(s) && s[i] != '=' && s[i] != ';' && s[i] != ',' {
		i++
	}
	name = strings.TrimSpace(s[start:i])
	if i >= len(s) || s[i] != '=' {
		return name, "", i
	}
	i = skip(s, i+1, " \t")
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
				return name, b.String(), i + 1
			default:
				b.WriteByte(s[i])
			}
		}
		return name, b.String(), i
	}
	start = i
	for i < len(s) && s[i] != ';' && s[i] != ',' {
		i++
	}
	return name, strings.TrimSpace(s[start:i]), i
}
