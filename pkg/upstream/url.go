package upstream

import (
	"fmt"
	"net/url"
	"strings"
)

// ParseURL checks a config field holding the absolute http(s) URL of an
// upstream: a scheme, a host, no #fragment (it is never sent). A query is
// kept. field names the field in errors ("config.url"); example is a URL the
// error suggests writing instead. Errors quote the URL only as ShowURL does.
func ParseURL(field, raw, example string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, fmt.Errorf("%s: required (write an absolute http(s) URL, e.g. %q)", field, example)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot be parsed as a URL (write an absolute http(s) URL, e.g. %q)", field, example)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: %q is not an absolute http(s) URL (write e.g. %q)", field, ShowURL(u), example)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, fmt.Errorf("%s: %q has a #fragment, which is never sent (remove it)", field, ShowURL(u))
	}
	return u, nil
}

// ParseBaseURL is ParseURL for an API root that paths are appended to: it
// must not carry a query either, and it comes back without a trailing "/".
func ParseBaseURL(field, raw, example string) (*url.URL, error) {
	u, err := ParseURL(field, raw, example)
	if err != nil {
		return nil, err
	}
	if u.RawQuery != "" || u.ForceQuery {
		return nil, fmt.Errorf("%s: %q must not carry a query (write the API root, e.g. %q)", field, ShowURL(u), example)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// ShowURL is the one way a URL appears in an error text or a log: a password
// is masked, every query value is replaced by "xxxxx" (keys stay, to tell two
// URLs apart; values often carry an API key or a feed token), and the
// fragment is left out. A URL that still holds an "@" outside its parsed
// credentials (a "user:pass@host" with no scheme reads as a path) is not
// shown at all.
func ShowURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	safe := *u
	safe.Fragment, safe.RawFragment = "", ""
	if safe.RawQuery != "" {
		var parts []string
		for part := range strings.SplitSeq(safe.RawQuery, "&") {
			key, _, hasValue := strings.Cut(part, "=")
			if hasValue {
				part = key + "=xxxxx"
			}
			parts = append(parts, part)
		}
		safe.RawQuery = strings.Join(parts, "&")
	}
	shown := safe.Redacted()
	if safe.User == nil && strings.Contains(shown, "@") {
		return "(URL not shown: it contains an @ that may hide a password)"
	}
	return shown
}

// ShowRawURL is ShowURL for a string; one that does not parse is not shown.
func ShowRawURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(URL not shown: it does not parse)"
	}
	return ShowURL(u)
}

// SameOrigin reports whether u has ref's scheme and host (case-insensitive).
func SameOrigin(u, ref *url.URL) bool {
	return strings.EqualFold(u.Scheme, ref.Scheme) && strings.EqualFold(u.Host, ref.Host)
}

// NextPage resolves a next-page reference (a Link header's target, a
// "next" URL in a body) against the page it came from, and refuses one on
// another scheme or host than origin: the request's headers carry
// credentials that must not travel, and a hostile page must not steer the
// worker elsewhere. field is the config field that sets origin, for the fix.
func NextPage(page *url.URL, ref string, origin *url.URL, field string) (*url.URL, error) {
	parsed, err := url.Parse(strings.TrimSpace(ref))
	if err != nil {
		return nil, fmt.Errorf("next page %q is not a URL", ShowRawURL(ref))
	}
	next := page.ResolveReference(parsed)
	if next.Scheme != "http" && next.Scheme != "https" {
		return nil, fmt.Errorf("next page %q is not an http(s) URL", ShowURL(next))
	}
	if !SameOrigin(next, origin) {
		return nil, fmt.Errorf("next page %q leaves %s://%s; refusing to follow it (set %s to the host the upstream links to)",
			ShowURL(next), origin.Scheme, origin.Host, field)
	}
	return next, nil
}
