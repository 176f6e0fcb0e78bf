package service

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/redact"
)

// natsAuth is how a service authenticates to NATS and secures the
// connection, from the environment:
//
//	NATS_URL               nats:// or tls://, may carry user:password or a token
//	NATS_CREDS             a .creds file (user JWT and nkey seed)
//	NATS_NKEY              a file holding an nkey seed (SU...)
//	NATS_TOKEN             a token (NATS_TOKEN_FILE: a file holding it)
//	NATS_CA                PEM CA certificates that sign the server's
//	NATS_CERT, NATS_KEY    a client certificate and its key (mutual TLS)
//	NATS_CONTEXT           a nats CLI context: its name, or a path to its .json
//
// A variable set overrides the same setting from the context. At most one
// of user and password, creds, nkey and token may be given.
type natsAuth struct {
	url       string
	user      string
	password  string
	creds     string
	nkey      string
	token     string
	ca        string
	cert, key string
	tlsFirst  bool
	// from names where each credential came from, for errors.
	from map[string]string
}

// readNATSAuth reads the variables above. It reads the context file, the
// token file and checks the other files exist; nothing else.
func readNATSAuth(lookup config.Env, rawURL string) (natsAuth, error) {
	a := natsAuth{url: rawURL, from: map[string]string{}}
	if name := get(lookup, "NATS_CONTEXT", ""); name != "" {
		if err := a.fromContext(lookup, name); err != nil {
			return a, err
		}
	}
	if _, set := lookup("NATS_URL"); set || a.url == "" {
		a.url = rawURL
	}
	set := func(field *string, key string) {
		if v := get(lookup, key, ""); v != "" {
			*field, a.from[key] = v, key
		}
	}
	set(&a.creds, "NATS_CREDS")
	set(&a.nkey, "NATS_NKEY")
	set(&a.token, "NATS_TOKEN")
	set(&a.ca, "NATS_CA")
	set(&a.cert, "NATS_CERT")
	set(&a.key, "NATS_KEY")
	if path := get(lookup, "NATS_TOKEN_FILE", ""); path != "" {
		if a.from["NATS_TOKEN"] == "NATS_TOKEN" {
			return a, errors.New("NATS_TOKEN and NATS_TOKEN_FILE are both set: keep one")
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return a, fmt.Errorf("NATS_TOKEN_FILE: %w (mount the token file there, or unset NATS_TOKEN_FILE)", err)
		}
		a.token, a.from["NATS_TOKEN"] = strings.TrimSpace(string(b)), "NATS_TOKEN_FILE"
	}
	if u, err := url.Parse(firstURL(a.url)); err == nil && u.User != nil {
		a.from["user"] = "NATS_URL"
	} else if a.user != "" {
		a.from["user"] = "NATS_CONTEXT"
	}
	var methods []string
	for _, k := range []string{"user", "NATS_CREDS", "NATS_NKEY", "NATS_TOKEN"} {
		if from, ok := a.from[k]; ok {
			methods = append(methods, from)
		}
	}
	if len(methods) > 1 {
		return a, fmt.Errorf("NATS credentials come from %s: give one way to authenticate (a user and password in NATS_URL, NATS_CREDS, NATS_NKEY or NATS_TOKEN)",
			strings.Join(methods, " and "))
	}
	for key, path := range map[string]string{"NATS_CREDS": a.creds, "NATS_NKEY": a.nkey, "NATS_CA": a.ca, "NATS_CERT": a.cert, "NATS_KEY": a.key} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			return a, fmt.Errorf("%s (from %s): %w (mount the file there, or unset it)", key, a.source(key), err)
		}
	}
	if (a.cert == "") != (a.key == "") {
		return a, errors.New("NATS_CERT and NATS_KEY go together: set both (the client certificate and its key) or neither")
	}
	return a, nil
}

func (a natsAuth) source(key string) string {
	if from, ok := a.from[key]; ok {
		return from
	}
	return key
}

// natsContext is the part of a nats CLI context pollgrid uses
// (ADR-21: ~/.config/nats/context/<name>.json).
type natsContext struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
	Creds    string `json:"creds"`
	NKey     string `json:"nkey"`
	Token    string `json:"token"`
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	CA       string `json:"ca"`
	TLSFirst bool   `json:"tls_first"`
	// Settings pollgrid cannot honour: set, they are an error rather than
	// silently ignored.
	NSC             string `json:"nsc"`
	JetStreamDomain string `json:"jetstream_domain"`
	JetStreamPrefix string `json:"jetstream_api_prefix"`
	InboxPrefix     string `json:"inbox_prefix"`
	UserJWT         string `json:"user_jwt"`
}

func (a *natsAuth) fromContext(lookup config.Env, name string) error {
	path := name
	if !strings.HasSuffix(name, ".json") && !strings.ContainsRune(name, os.PathSeparator) {
		dir := get(lookup, "XDG_CONFIG_HOME", "")
		if dir == "" {
			dir = filepath.Join(get(lookup, "HOME", ""), ".config")
		}
		path = filepath.Join(dir, "nats", "context", name+".json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("NATS_CONTEXT=%s: %w (create it with `nats context save`, or give the path of its .json)", name, err)
	}
	var c natsContext
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("NATS_CONTEXT=%s: %s is not a nats context: %w", name, path, err)
	}
	for field, v := range map[string]string{"nsc": c.NSC, "jetstream_domain": c.JetStreamDomain,
		"jetstream_api_prefix": c.JetStreamPrefix, "inbox_prefix": c.InboxPrefix, "user_jwt": c.UserJWT} {
		if v != "" {
			return fmt.Errorf("NATS_CONTEXT=%s: %q is not supported by pollgrid (use creds instead of user_jwt and nsc; no JetStream domain or prefix)", name, field)
		}
	}
	a.url, a.user, a.password, a.tlsFirst = c.URL, c.User, c.Password, c.TLSFirst
	for key, v := range map[string]string{"NATS_CREDS": c.Creds, "NATS_NKEY": c.NKey, "NATS_TOKEN": c.Token,
		"NATS_CERT": c.Cert, "NATS_KEY": c.Key, "NATS_CA": c.CA} {
		if v != "" {
			*map[string]*string{"NATS_CREDS": &a.creds, "NATS_NKEY": &a.nkey, "NATS_TOKEN": &a.token,
				"NATS_CERT": &a.cert, "NATS_KEY": &a.key, "NATS_CA": &a.ca}[key] = expandHome(v, lookup)
			a.from[key] = "NATS_CONTEXT"
		}
	}
	return nil
}

func expandHome(path string, lookup config.Env) string {
	if rest, ok := strings.CutPrefix(path, "~/"); ok {
		return filepath.Join(get(lookup, "HOME", ""), rest)
	}
	return path
}

// firstURL is the first of a comma-separated server list.
func firstURL(urls string) string {
	first, _, _ := strings.Cut(urls, ",")
	return strings.TrimSpace(first)
}

// options are the nats.Options for a. secrets are what the redactor must hide.
func (a natsAuth) options() ([]nats.Option, []string, error) {
	var opts []nats.Option
	var secrets []string
	switch {
	case a.creds != "":
		opts = append(opts, nats.UserCredentials(a.creds))
	case a.nkey != "":
		opt, err := nats.NkeyOptionFromSeed(a.nkey)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w (a file holding an nkey seed, SU...)", a.source("NATS_NKEY"), err)
		}
		opts = append(opts, opt)
	case a.token != "":
		opts = append(opts, nats.Token(a.token))
		secrets = append(secrets, a.token)
	case a.user != "":
		opts = append(opts, nats.UserInfo(a.user, a.password))
		secrets = append(secrets, a.password)
	}
	if a.ca != "" {
		opts = append(opts, nats.RootCAs(a.ca))
	}
	if a.cert != "" {
		opts = append(opts, nats.ClientCert(a.cert, a.key))
	}
	if a.tlsFirst {
		opts = append(opts, nats.TLSHandshakeFirst())
	}
	for _, raw := range strings.Split(a.url, ",") {
		if u, err := url.Parse(strings.TrimSpace(raw)); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok && p != "" {
				secrets = append(secrets, p)
			} else if u.User.Username() != "" {
				secrets = append(secrets, u.User.Username()) // a token written as the user
			}
		}
	}
	return opts, secrets, nil
}

// explainNATS says what a NATS error means for whoever runs the service,
// naming the setting to fix. It keeps err for errors.Is.
func explainNATS(err error) error {
	if err == nil {
		return nil
	}
	var hint string
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var certInvalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var opErr *net.OpError
	switch {
	case errors.Is(err, nats.ErrAuthorization):
		hint = "NATS refused our credentials: check the user and password in NATS_URL, NATS_CREDS, NATS_NKEY or NATS_TOKEN against the server's accounts"
	case errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAccountAuthExpired):
		hint = "our NATS credentials expired: issue a new .creds file for NATS_CREDS"
	case errors.Is(err, nats.ErrAuthRevoked):
		hint = "our NATS credentials were revoked: issue a new .creds file for NATS_CREDS"
	case errors.Is(err, nats.ErrPermissionViolation):
		hint = "NATS denied a subject to our user: allow publish and subscribe on pollgrid.>, signals.>, $JS.API.> and _INBOX.>, and publish on $KV.pollgrid.> (deploy/nats/pollgrid.conf, docs/deploy.md)"
	case errors.Is(err, nats.ErrSecureConnRequired):
		hint = "NATS requires TLS: write tls:// in NATS_URL, and set NATS_CA if its certificate is not signed by a public CA"
	case errors.As(err, &unknownAuthority), errors.As(err, &verify):
		hint = "NATS's TLS certificate is not signed by a CA we trust: set NATS_CA to the CA certificate that signed it"
	case errors.As(err, &hostname):
		hint = "NATS's TLS certificate does not name the host in NATS_URL: connect by a name the certificate holds"
	case errors.As(err, &certInvalid):
		hint = "NATS's TLS certificate is not valid (expired, or not for a server)"
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount), errors.Is(err, nats.ErrNoResponders):
		hint = "JetStream does not answer: start nats-server with JetStream (-js), and enable it for our account"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, nats.ErrNoServers):
		hint = "nothing accepts connections at NATS_URL: is nats-server running there?"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		hint = "NATS_URL cannot be reached: check the host and port"
	case errors.Is(err, fs.ErrNotExist):
		hint = "a NATS credentials or certificate file is missing"
	case strings.Contains(err.Error(), "tls: "):
		hint = "the TLS handshake with NATS failed: check NATS_CA, and NATS_CERT and NATS_KEY if the server wants a client certificate"
	default:
		return err
	}
	return fmt.Errorf("%s (%w)", hint, err)
}

// natsCause is why nc is not connected: its last error, explained, or its status.
func natsCause(nc *nats.Conn) error {
	if nc == nil {
		return errors.New("no connection")
	}
	if err := nc.LastError(); err != nil {
		return explainNATS(err)
	}
	return fmt.Errorf("connection %s", strings.ToLower(nc.Status().String()))
}

// natsTimings: reconnect for ever, every second (with jitter); find a dead
// peer within 30 s (pings every 10 s, three may go unanswered) rather than
// the client's default 4 minutes.
func natsTimings() []nats.Option {
	return []nats.Option{
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// The server may answer "authorization violation" while it restarts
		// with other accounts; by default the client gives up after two,
		// and the connection then stays closed for good.
		nats.IgnoreAuthErrorAbort(),
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
	}
}

// redactNATSURL shows NATS_URL for logs.
func redactNATSURL(urls string) string {
	var out []string
	for _, u := range strings.Split(urls, ",") {
		out = append(out, redact.URL(strings.TrimSpace(u)))
	}
	return strings.Join(out, ",")
}
