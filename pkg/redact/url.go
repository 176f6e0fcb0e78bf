package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// secretParams are query parameter names whose values are credentials.
// Names are compared lower-cased with "-" read as "_".
var secretParams = map[string]bool{
	"token": true, "access_token": true, "api_key": true, "apikey": true, "key": true,
	"secret": true, "password": true, "signature": true, "sig": true, "auth": true,
	"client_secret": true,
}

// secretSuffixes catch the many spellings of the same thing
// (refresh_token, x_amz_signature, db_password).
var secretSuffixes = []string{"_token", "_secret", "_signature", "_password"}

// URL returns s with the userinfo password and the values of secret-looking
// query (and fragment) parameters replaced by Mask, keeping the rest
// readable: "https://x/y?token=[REDACTED]&page=2". A string that does not
// parse as a URL is replaced whole, since its secrets cannot be located.
func URL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return Mask
	}
	hasPassword := false
	if u.User != nil {
		if _, hasPassword = u.User.Password(); hasPassword {
			// A placeholder that url does not escape; swapped for Mask below.
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		}
	}
	u.RawQuery = redactParams(u.RawQuery)
	if fragment := u.EscapedFragment(); strings.Contains(fragment, "=") {
		if redacted := redactParams(fragment); redacted != fragment {
			u.Fragment, _ = url.PathUnescape(redacted)
			u.RawFragment = redacted
		}
	}
	out := u.String()
	if hasPassword {
		// The username is escaped, so the first ":REDACTED@" is the password.
		out = strings.Replace(out, ":REDACTED@", ":"+Mask+"@", 1)
	}
	return out
}

// redactParams redacts the values of secret parameters in an escaped
// "a=1&b=2" string, leaving order and escaping of everything else as is.
func redactParams(raw string) string {
	if raw == "" {
		return raw
	}
	parts := strings.Split(raw, "&")
	for i, part := range parts {
		name, _, hasValue := strings.Cut(part, "=")
		if hasValue && isSecretParam(name) {
			parts[i] = name + "=" + Mask
		}
	}
	return strings.Join(parts, "&")
}

func isSecretParam(escapedName string) bool {
	name, err := url.QueryUnescape(escapedName)
	if err != nil {
		name = escapedName
	}
	name = strings.ReplaceAll(strings.ToLower(name), "-", "_")
	if secretParams[name] {
		return true
	}
	for _, suffix := range secretSuffixes {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

var urlInText = regexp.MustCompile(`https?://[^\s"'<>]+`)

// URLsIn applies URL to every http(s) URL inside s, such as the one a
// *url.Error quotes, so tokens in query strings never reach an error text.
func URLsIn(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, URL)
}
