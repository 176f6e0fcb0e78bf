package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/redact"
)

// connFlags are the nats CLI's connection flags, with its environment
// variables as defaults and its contexts under them.
type connFlags struct {
	server, user, password, creds, nkey, token, cert, key, ca, context string
	fs                                                                 *pflag.FlagSet
}

func (c *connFlags) register(fs *pflag.FlagSet, env config.Env) {
	get := func(k string) string {
		if env == nil {
			return ""
		}
		v, _ := env(k)
		return v
	}
	c.fs = fs
	fs.StringVarP(&c.server, "server", "s", get("NATS_URL"), "NATS server URLs, comma separated (NATS_URL; default the context's, else nats://127.0.0.1:4222)")
	fs.StringVar(&c.user, "user", get("NATS_USER"), "user name or token (NATS_USER)")
	fs.StringVar(&c.password, "password", get("NATS_PASSWORD"), "password (NATS_PASSWORD)")
	fs.StringVar(&c.creds, "creds", get("NATS_CREDS"), "user credentials file (NATS_CREDS)")
	fs.StringVar(&c.nkey, "nkey", get("NATS_NKEY"), "user NKey seed file (NATS_NKEY)")
	fs.StringVar(&c.token, "token", get("NATS_TOKEN"), "authentication token (NATS_TOKEN)")
	fs.StringVar(&c.cert, "tlscert", get("NATS_CERT"), "TLS client certificate file (NATS_CERT)")
	fs.StringVar(&c.key, "tlskey", get("NATS_KEY"), "TLS client key file (NATS_KEY)")
	fs.StringVar(&c.ca, "tlsca", get("NATS_CA"), "TLS certificate authority file (NATS_CA)")
	fs.StringVar(&c.context, "context", get("NATS_CONTEXT"), "NATS context to use, as the nats CLI keeps them (NATS_CONTEXT; default the selected one)")
}

// natsContext is the part of a nats CLI context pollctl uses
// (~/.config/nats/context/<name>.json).
type natsContext struct {
	URL         string `json:"url"`
	User        string `json:"user"`
	Password    string `json:"password"`
	Creds       string `json:"creds"`
	NKey        string `json:"nkey"`
	Token       string `json:"token"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
	InboxPrefix string `json:"inbox_prefix"`
}

func natsConfigDir(env config.Env) string {
	if v, ok := env("XDG_CONFIG_HOME"); ok && v != "" {
		return filepath.Join(v, "nats")
	}
	home, _ := env("HOME")
	return filepath.Join(home, ".config", "nats")
}

// loadContext reads the named context, or the selected one when name is
// empty; none selected is no context.
func loadContext(env config.Env, name string) (natsContext, string, error) {
	dir := natsConfigDir(env)
	if name == "" {
		b, err := os.ReadFile(filepath.Join(dir, "context.txt"))
		if err != nil {
			return natsContext{}, "", nil
		}
		name = strings.TrimSpace(string(b))
		if name == "" {
			return natsContext{}, "", nil
		}
	}
	path := filepath.Join(dir, "context", name+".json")
	b, err := os.ReadFile(path)
	if err != nil {
		return natsContext{}, name, fmt.Errorf("NATS context %q: %w (list them with `nats context ls`)", name, err)
	}
	var nctx natsContext
	if err := json.Unmarshal(b, &nctx); err != nil {
		return natsContext{}, name, fmt.Errorf("NATS context %q (%s) is not JSON: %w", name, path, err)
	}
	return nctx, name, nil
}

// connect dials NATS: flags (and their environment variables) first, then
// the context, then the default URL.
func (c *connFlags) connect(env config.Env) (*nats.Conn, error) {
	nctx, ctxName, err := loadContext(env, c.context)
	if err != nil {
		return nil, err
	}
	pick := func(flag, fromContext string) string {
		if flag != "" {
			return flag
		}
		return fromContext
	}
	url := pick(c.server, nctx.URL)
	if url == "" {
		url = nats.DefaultURL
	}
	opts := []nats.Option{nats.Name("pollctl"), nats.Timeout(5 * time.Second)}
	user, password := pick(c.user, nctx.User), pick(c.password, nctx.Password)
	switch {
	case user != "" && password != "":
		opts = append(opts, nats.UserInfo(user, password))
	case user != "":
		opts = append(opts, nats.Token(user))
	}
	if token := pick(c.token, nctx.Token); token != "" {
		opts = append(opts, nats.Token(token))
	}
	if creds := pick(c.creds, nctx.Creds); creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	if nkey := pick(c.nkey, nctx.NKey); nkey != "" {
		opt, err := nats.NkeyOptionFromSeed(nkey)
		if err != nil {
			return nil, fmt.Errorf("--nkey %s: %w", nkey, err)
		}
		opts = append(opts, opt)
	}
	if cert, key := pick(c.cert, nctx.Cert), pick(c.key, nctx.Key); cert != "" || key != "" {
		opts = append(opts, nats.ClientCert(cert, key))
	}
	if ca := pick(c.ca, nctx.CA); ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	if nctx.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(nctx.InboxPrefix))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		where := redact.URL(url)
		if ctxName != "" {
			where += " (context " + ctxName + ")"
		}
		return nil, fmt.Errorf("connect to NATS at %s: %w (set --server or NATS_URL, and the credentials: pollctl --help)", where, err)
	}
	return nc, nil
}
