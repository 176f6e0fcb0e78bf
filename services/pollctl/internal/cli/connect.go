package cli

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/natsconn"
)

// connFlags are the nats CLI's connection flags, each mapped onto the
// setting of pkg/natsconn its environment variable gives: a flag given wins
// over the variable.
type connFlags struct {
	fs     *pflag.FlagSet
	values map[natsconn.Setting]*string
}

// connFlagNames are the flags, with the nats CLI's names, by setting.
// NATS_TOKEN_FILE has no flag: --token gives the token itself.
var connFlagNames = []struct {
	setting           natsconn.Setting
	name, short, help string
}{
	{natsconn.URL, "server", "s", "NATS server URLs, comma separated (default the context's, else nats://127.0.0.1:4222)"},
	{natsconn.Context, "context", "", "nats CLI context: its name or the path of its .json (default the selected one, when nothing else is given)"},
	{natsconn.User, "user", "", "user name, with --password"},
	{natsconn.Password, "password", "", "password of --user"},
	{natsconn.Creds, "creds", "", "user credentials file (.creds)"},
	{natsconn.NKey, "nkey", "", "file holding a user nkey seed"},
	{natsconn.Token, "token", "", "authentication token"},
	{natsconn.Cert, "tlscert", "", "TLS client certificate file, with --tlskey"},
	{natsconn.Key, "tlskey", "", "TLS client key file"},
	{natsconn.CA, "tlsca", "", "TLS certificate authority file"},
	{natsconn.InboxPrefix, "inbox-prefix", "", "prefix of reply subjects instead of _INBOX (a user allowed only its own)"},
}

// register adds the flags. They have no defaults: the environment is read
// when connecting, so that --help never shows a password or token.
func (c *connFlags) register(fs *pflag.FlagSet) {
	c.fs, c.values = fs, map[natsconn.Setting]*string{}
	for _, f := range connFlagNames {
		c.values[f.setting] = new(string)
		fs.StringVarP(c.values[f.setting], f.name, f.short, "", f.help+" ("+f.setting.Variable()+")")
	}
}

// options are the environment's settings with the flags given over them.
func (c *connFlags) options(env config.Env) natsconn.Options {
	var flags natsconn.Options
	for _, f := range connFlagNames {
		if c.fs != nil && c.fs.Changed(f.name) {
			flags.Set(f.setting, *c.values[f.setting], "--"+f.name)
		}
	}
	o := natsconn.FromEnv(env).With(flags)
	o.SelectedContext = true
	o.Permissions = "allow the subjects of the operator or viewer role in deploy/nats/pollgrid.conf (docs/operate.md, Access control)"
	return o
}

// connect dials NATS under pkg/natsconn's rules: flags, then the
// environment, then the context, then the default URL.
func (c *connFlags) connect(env config.Env) (*nats.Conn, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	dial, err := natsconn.New(c.options(env), env)
	if err != nil {
		return nil, err
	}
	// Asynchronous errors (a permissions violation) are reported once, with
	// the command's own error (Main), not also as nats.go's default line.
	nc, err := dial.Connect(nats.Name("pollctl"), nats.Timeout(5*time.Second),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		where := dial.Redacted()
		if dial.Context() != "" {
			where += fmt.Sprintf(" (NATS context %q)", dial.Context())
		}
		return nil, fmt.Errorf("connect to NATS at %s: %w (pollctl --help lists the connection flags)", where, dial.Explain(err))
	}
	return nc, nil
}
