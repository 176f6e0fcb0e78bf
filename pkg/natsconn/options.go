package natsconn

import "strings"

// Setting is one thing that says how to reach NATS.
type Setting int

// The settings, each with its variable (Variable) and, for most, a field of
// a nats CLI context.
const (
	// URL: one server or a comma-separated list (nats://, tls://, ws://,
	// wss://), which may carry user:password@ or token@.
	URL Setting = iota
	// Context: a nats CLI context, its name or the path of its .json.
	Context
	// User and Password: a user of the server's accounts.
	User
	Password
	// Creds: a .creds file (a user JWT and its nkey seed).
	Creds
	// NKey: a file holding an nkey seed (SU...).
	NKey
	// Token: a token; TokenFile: a file holding one.
	Token
	TokenFile
	// CA: PEM certificates of the CAs that sign the server's certificate.
	CA
	// Cert and Key: a client certificate and its key (mutual TLS).
	Cert
	Key
	// InboxPrefix: the prefix of reply subjects instead of _INBOX.
	InboxPrefix
	numSettings
)

// settings describes each Setting: the variable it is read from, its field
// in a nats CLI context (none for Context and TokenFile), and whether it
// names a file.
var settings = [numSettings]struct {
	variable, contextField string
	file                   bool
}{
	URL:         {variable: "NATS_URL", contextField: "url"},
	Context:     {variable: "NATS_CONTEXT"},
	User:        {variable: "NATS_USER", contextField: "user"},
	Password:    {variable: "NATS_PASSWORD", contextField: "password"},
	Creds:       {variable: "NATS_CREDS", contextField: "creds", file: true},
	NKey:        {variable: "NATS_NKEY", contextField: "nkey", file: true},
	Token:       {variable: "NATS_TOKEN", contextField: "token"},
	TokenFile:   {variable: "NATS_TOKEN_FILE", file: true},
	CA:          {variable: "NATS_CA", contextField: "ca", file: true},
	Cert:        {variable: "NATS_CERT", contextField: "cert", file: true},
	Key:         {variable: "NATS_KEY", contextField: "key", file: true},
	InboxPrefix: {variable: "NATS_INBOX_PREFIX", contextField: "inbox_prefix"},
}

// Variable is the environment variable s is read from.
func (s Setting) Variable() string { return settings[s].variable }

// Variables are every environment variable FromEnv reads, in Setting order.
func Variables() []string {
	out := make([]string, 0, numSettings)
	for s := range numSettings {
		out = append(out, s.Variable())
	}
	return out
}

// Env looks up an environment variable (os.LookupEnv, config.Env).
type Env = func(key string) (string, bool)

// Options are the settings one process was given, each with where it came
// from, plus how the process wants them used. The zero value is "nothing
// given": nats://127.0.0.1:4222, no credentials, no TLS.
type Options struct {
	given [numSettings]given

	// SelectedContext lets New use the context `nats context select` chose
	// when no setting at all was given (pollctl, like the nats CLI). The
	// services leave it false.
	SelectedContext bool
	// Permissions says what this program's NATS user must be allowed, for
	// the explanation of a permissions violation.
	Permissions string
}

type given struct{ value, from string }

// Set gives s the value, from the source named from ("NATS_CREDS",
// "--creds"), which errors and explanations name. An empty value (after
// trimming spaces) gives nothing.
func (o *Options) Set(s Setting, value, from string) {
	if value = strings.TrimSpace(value); value != "" {
		o.given[s] = given{value: value, from: from}
	}
}

// Get is the value of s, "" when not given.
func (o Options) Get(s Setting) string { return o.given[s].value }

// From names where s came from, "" when not given.
func (o Options) From(s Setting) string { return o.given[s].from }

// empty reports whether no setting was given.
func (o Options) empty() bool {
	for _, g := range o.given {
		if g.value != "" {
			return false
		}
	}
	return true
}

// FromEnv reads every setting from its variable (Variables).
func FromEnv(lookup Env) Options {
	var o Options
	for s := range numSettings {
		if v, ok := lookup(s.Variable()); ok {
			o.Set(s, v, s.Variable())
		}
	}
	return o
}

// With is o with every setting upper gives replacing o's: pollctl's flags
// over the environment, the environment over a context. A token or token
// file in upper replaces both of o's. The knobs (SelectedContext,
// Permissions) are o's.
func (o Options) With(upper Options) Options {
	if upper.Get(Token) != "" || upper.Get(TokenFile) != "" {
		o.given[Token], o.given[TokenFile] = given{}, given{}
	}
	for s, g := range upper.given {
		if g.value != "" {
			o.given[s] = g
		}
	}
	return o
}
