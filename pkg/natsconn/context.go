package natsconn

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// natsContext is a nats CLI context as ADR-21 describes it
// (~/.config/nats/context/<name>.json): every field it may hold, so that
// none pollgrid cannot honour is silently ignored.
type natsContext struct {
	Description string `json:"description"`
	ColorScheme string `json:"color_scheme"`

	URL         string `json:"url"`
	User        string `json:"user"`
	Password    string `json:"password"`
	Creds       string `json:"creds"`
	NKey        string `json:"nkey"`
	Token       string `json:"token"`
	CA          string `json:"ca"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	InboxPrefix string `json:"inbox_prefix"`
	TLSFirst    bool   `json:"tls_first"`

	NSC                  string   `json:"nsc"`
	UserJWT              string   `json:"user_jwt"`
	JetStreamDomain      string   `json:"jetstream_domain"`
	JetStreamAPIPrefix   string   `json:"jetstream_api_prefix"`
	JetStreamEventPrefix string   `json:"jetstream_event_prefix"`
	SocksProxy           string   `json:"socks_proxy"`
	WinCertStore         string   `json:"windows_cert_store"`
	WinCertMatchBy       string   `json:"windows_cert_match_by"`
	WinCertMatch         string   `json:"windows_cert_match"`
	WinCACertsMatch      []string `json:"windows_ca_certs_match"`
}

// refused are the context fields pollgrid does not honour, and the fix.
func (c natsContext) refused() (field, fix string) {
	windows := "give the certificate files in cert, key and ca instead"
	for _, r := range []struct {
		field, value, fix string
	}{
		{"nsc", c.NSC, "write the credentials it resolves to a .creds file (`nsc generate creds`) and set creds and url instead"},
		{"user_jwt", c.UserJWT, "write the JWT and its seed to a .creds file and set creds instead"},
		{"jetstream_domain", c.JetStreamDomain, "pollgrid uses the JetStream of the account it connects to: remove it, or use a context without it"},
		{"jetstream_api_prefix", c.JetStreamAPIPrefix, "pollgrid uses the JetStream of the account it connects to: remove it, or use a context without it"},
		{"jetstream_event_prefix", c.JetStreamEventPrefix, "pollgrid uses the JetStream of the account it connects to: remove it, or use a context without it"},
		{"socks_proxy", c.SocksProxy, "pollgrid connects to NATS directly: remove it"},
		{"windows_cert_store", c.WinCertStore, windows},
		{"windows_cert_match_by", c.WinCertMatchBy, windows},
		{"windows_cert_match", c.WinCertMatch, windows},
		{"windows_ca_certs_match", strings.Join(c.WinCACertsMatch, ","), windows},
	} {
		if strings.TrimSpace(r.value) != "" {
			return r.field, r.fix
		}
	}
	return "", ""
}

// configDir is the nats CLI's configuration directory:
// $XDG_CONFIG_HOME/nats, else ~/.config/nats.
func configDir(lookup Env) string {
	if v, ok := lookup("XDG_CONFIG_HOME"); ok && strings.TrimSpace(v) != "" {
		return filepath.Join(strings.TrimSpace(v), "nats")
	}
	return filepath.Join(home(lookup), ".config", "nats")
}

func home(lookup Env) string {
	v, _ := lookup("HOME")
	return strings.TrimSpace(v)
}

// selectedContext is the name `nats context select` wrote, "" for none.
func selectedContext(lookup Env) string {
	b, err := os.ReadFile(filepath.Join(configDir(lookup), "context.txt"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// contextPath is where the context named ref is: ref itself when it is a
// path (it ends in .json or holds a path separator), else its file in the
// nats CLI's directory.
func contextPath(lookup Env, ref string) string {
	if strings.HasSuffix(ref, ".json") || strings.ContainsRune(ref, '/') || strings.ContainsRune(ref, os.PathSeparator) {
		return expandHome(lookup, ref)
	}
	return filepath.Join(configDir(lookup), "context", ref+".json")
}

// loadContext reads the context ref (named by from) as the lowest layer of
// settings, and whether it asks for the TLS handshake first.
func loadContext(lookup Env, ref, from string) (Options, bool, error) {
	where := fmt.Sprintf("NATS context %q (%s)", ref, from)
	path := contextPath(lookup, ref)
	b, err := os.ReadFile(path)
	if err != nil {
		return Options{}, false, fmt.Errorf("%s: %w (`nats context ls` lists them and `nats context save` makes one; or give the path of its .json)", where, err)
	}
	var c natsContext
	if err := json.Unmarshal(b, &c); err != nil {
		return Options{}, false, fmt.Errorf("%s: %s is not a nats context: %w", where, path, err)
	}
	if field, fix := c.refused(); field != "" {
		return Options{}, false, fmt.Errorf("%s: %q is not supported by pollgrid: %s", where, field, fix)
	}
	var o Options
	for s, v := range map[Setting]string{URL: c.URL, User: c.User, Password: c.Password, Token: c.Token, InboxPrefix: c.InboxPrefix,
		Creds: c.Creds, NKey: c.NKey, CA: c.CA, Cert: c.Cert, Key: c.Key} {
		if settings[s].file {
			v = expandHome(lookup, v)
		}
		o.Set(s, v, fmt.Sprintf("%s of NATS context %q", settings[s].contextField, ref))
	}
	return o, c.TLSFirst, nil
}

// expandHome replaces a leading ~/ by $HOME, as the nats CLI writes paths.
func expandHome(lookup Env, path string) string {
	if rest, ok := strings.CutPrefix(path, "~/"); ok {
		return filepath.Join(home(lookup), rest)
	}
	return path
}
