package natsconn

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/tlstest"
)

func mapEnv(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// applied is what d's options set on a nats.Options, as nats.Connect would
// see them.
func applied(t *testing.T, d *Dialer) nats.Options {
	t.Helper()
	var o nats.Options
	for _, opt := range d.Options() {
		require.NoError(t, opt(&o))
	}
	return o
}

// flags are settings given the way pollctl gives its flags.
func flags(kv ...string) Options {
	var o Options
	names := map[string]Setting{"--server": URL, "--context": Context, "--user": User, "--password": Password, "--creds": Creds,
		"--nkey": NKey, "--token": Token, "--tlsca": CA, "--tlscert": Cert, "--tlskey": Key, "--inbox-prefix": InboxPrefix}
	for i := 0; i < len(kv); i += 2 {
		o.Set(names[kv[i]], kv[i+1], kv[i])
	}
	return o
}

// Every rule of the package doc that needs no server: what is used, and
// what is refused with the setting to fix named.
func TestRules(t *testing.T) {
	_, seed := nkeyUser(t)
	_, otherSeed := nkeyUser(t)
	ca := tlstest.NewCA(t)
	client := ca.Client(t, "pollgrid")
	other := ca.Client(t, "other")
	tokenFile := writeFile(t, "token", "s3cret-token\n")
	notPEM := writeFile(t, "not.pem", "not a certificate")

	tests := []struct {
		name  string
		env   map[string]string
		flags Options
		// want is a substring of the error; empty: no error, and check looks.
		want  string
		check func(t *testing.T, d *Dialer, o nats.Options)
	}{
		{name: "nothing given: the default URL, no credentials", check: func(t *testing.T, d *Dialer, o nats.Options) {
			assert.Equal(t, "nats://127.0.0.1:4222", d.URL())
			assert.Empty(t, o.User)
			assert.Empty(t, o.Token)
			assert.Nil(t, o.UserJWT)
			assert.False(t, o.Secure)
		}},
		{name: "a cluster in NATS_URL", env: map[string]string{"NATS_URL": " nats://a:4222,nats://b:4222 "}, check: func(t *testing.T, d *Dialer, _ nats.Options) {
			assert.Equal(t, "nats://a:4222,nats://b:4222", d.URL())
		}},
		{name: "a flag wins over its variable", env: map[string]string{"NATS_URL": "nats://env:4222", "NATS_CA": notPEM},
			flags: flags("--server", "nats://flag:4222", "--tlsca", ca.CertFile), check: func(t *testing.T, d *Dialer, o nats.Options) {
				assert.Equal(t, "nats://flag:4222", d.URL())
				assert.NotNil(t, o.RootCAsCB, "the flag's CA, not the variable's broken one")
			}},
		{name: "user and password", env: map[string]string{"NATS_USER": "alice", "NATS_PASSWORD": "pw"}, check: func(t *testing.T, d *Dialer, o nats.Options) {
			assert.Equal(t, "alice", o.User)
			assert.Equal(t, "pw", o.Password)
			assert.Contains(t, d.Secrets(), "pw")
		}},
		{name: "a token file, its newline dropped", env: map[string]string{"NATS_TOKEN_FILE": tokenFile}, check: func(t *testing.T, d *Dialer, o nats.Options) {
			assert.Equal(t, "s3cret-token", o.Token)
			assert.Contains(t, d.Secrets(), "s3cret-token", "redacted from logs")
		}},
		{name: "--token over NATS_TOKEN_FILE", env: map[string]string{"NATS_TOKEN_FILE": tokenFile}, flags: flags("--token", "flag-token"),
			check: func(t *testing.T, _ *Dialer, o nats.Options) { assert.Equal(t, "flag-token", o.Token) }},
		{name: "a token in the URL is a secret", env: map[string]string{"NATS_URL": "nats://url-token@h:4222"}, check: func(t *testing.T, d *Dialer, _ nats.Options) {
			assert.Contains(t, d.Secrets(), "url-token")
			assert.Equal(t, "nats://[REDACTED]@h:4222", d.Redacted())
		}},
		{name: "nkey, CA and client certificate", env: map[string]string{"NATS_NKEY": seed, "NATS_CA": ca.CertFile, "NATS_CERT": client.CertFile, "NATS_KEY": client.KeyFile},
			check: func(t *testing.T, _ *Dialer, o nats.Options) {
				assert.NotEmpty(t, o.Nkey)
				assert.NotNil(t, o.RootCAsCB)
				assert.NotNil(t, o.TLSCertCB)
			}},
		{name: "an inbox prefix", env: map[string]string{"NATS_INBOX_PREFIX": "_INBOX_consumer"},
			check: func(t *testing.T, _ *Dialer, o nats.Options) { assert.Equal(t, "_INBOX_consumer", o.InboxPrefix) }},

		{name: "two ways to authenticate", env: map[string]string{"NATS_CREDS": tokenFile, "NATS_NKEY": seed},
			want: "NATS credentials come from NATS_CREDS and NATS_NKEY: give one way to authenticate"},
		{name: "a password in the URL and an nkey", env: map[string]string{"NATS_URL": "nats://u:p@h:4222", "NATS_NKEY": seed},
			want: "NATS credentials come from NATS_URL and NATS_NKEY"},
		{name: "a user and a token", env: map[string]string{"NATS_USER": "u", "NATS_PASSWORD": "p", "NATS_TOKEN": "t"},
			want: "NATS credentials come from NATS_USER/NATS_PASSWORD and NATS_TOKEN"},
		{name: "a flag and a variable of two ways", env: map[string]string{"NATS_NKEY": seed}, flags: flags("--user", "u", "--password", "p"),
			want: "NATS credentials come from --user/--password and NATS_NKEY: give one way to authenticate (a user and password, a creds file, an nkey or a token): keep one, remove the others"},
		{name: "a token twice", env: map[string]string{"NATS_TOKEN": "t", "NATS_TOKEN_FILE": tokenFile},
			want: "NATS_TOKEN and NATS_TOKEN_FILE are both set: keep one"},
		{name: "a user without a password", env: map[string]string{"NATS_USER": "u"},
			want: "NATS_USER gives a user without a password: set NATS_PASSWORD too (a token goes in NATS_TOKEN)"},
		{name: "a password without a user", flags: flags("--password", "p"),
			want: "--password gives a password without a user: set NATS_USER too"},
		{name: "a certificate without its key", env: map[string]string{"NATS_CERT": client.CertFile},
			want: "NATS_CERT is set without NATS_KEY: a client certificate and its key go together"},
		{name: "a key without its certificate", flags: flags("--tlskey", client.KeyFile),
			want: "--tlskey is set without NATS_CERT"},
		{name: "a key of another certificate", env: map[string]string{"NATS_CERT": client.CertFile, "NATS_KEY": other.KeyFile},
			want: "NATS_CERT: nats: error loading client certificate: tls: private key does not match public key"},
		{name: "a missing file", env: map[string]string{"NATS_CREDS": "/run/secrets/nope.creds"},
			want: "NATS_CREDS: stat /run/secrets/nope.creds: no such file or directory (put the file there, or give another path)"},
		{name: "a missing file from a flag", flags: flags("--tlsca", "/nope/ca.pem"), want: "--tlsca: stat /nope/ca.pem"},
		{name: "a creds file that is not one", env: map[string]string{"NATS_CREDS": notPEM}, want: "NATS_CREDS: "},
		{name: "an nkey file that is not one", env: map[string]string{"NATS_NKEY": notPEM}, want: "NATS_NKEY: "},
		{name: "a CA that is not PEM", env: map[string]string{"NATS_CA": notPEM}, want: "NATS_CA: nats: failed to parse root certificate"},
		{name: "an empty token file", env: map[string]string{"NATS_TOKEN_FILE": writeFile(t, "empty", "\n")}, want: "is empty: it should hold the token"},
		{name: "an inbox prefix with a wildcard", env: map[string]string{"NATS_INBOX_PREFIX": "_INBOX.>"}, want: `NATS_INBOX_PREFIX="_INBOX.>": not an inbox prefix`},
		{name: "a second nkey from a flag replaces the variable's", env: map[string]string{"NATS_NKEY": notPEM}, flags: flags("--nkey", otherSeed),
			check: func(t *testing.T, _ *Dialer, o nats.Options) { assert.NotEmpty(t, o.Nkey) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := FromEnv(mapEnv(tt.env)).With(tt.flags)
			d, err := New(o, mapEnv(tt.env))
			if tt.want != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.want)
				assert.NotContains(t, err.Error(), ":p@", "no password in an error")
				return
			}
			require.NoError(t, err)
			tt.check(t, d, applied(t, d))
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://u:s3cret@a:4222, tls://u:s3cret@b:4222", "nats://u:[REDACTED]@a:4222,tls://u:[REDACTED]@b:4222"},
		{"nats://t0ken@a:4222", "nats://[REDACTED]@a:4222"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, RedactURL(tt.in))
	}
}
