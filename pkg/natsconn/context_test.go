package natsconn

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The context rules: where a context is found, what of it is honoured,
// what is refused, and when the selected one is used.
func TestContexts(t *testing.T) {
	home, xdg := t.TempDir(), t.TempDir()
	_, seed := nkeyUser(t)
	save := func(dir, name, body string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
		require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
		return path
	}
	save(home, ".config/nats/context/prod.json", `{"description": "prod", "url": "tls://nats.prod:4222", "nkey": "`+seed+`", "tls_first": true, "inbox_prefix": "_INBOX_ops", "color_scheme": "dark", "a_future_field": 1}`)
	save(home, ".config/nats/context/pw.json", `{"url": "nats://h:4222", "user": "alice", "password": "ctx-pw"}`)
	save(home, ".config/nats/context/tilde.json", `{"nkey": "~/seed.nk"}`)
	save(home, "seed.nk", string(must(os.ReadFile(seed))))
	save(home, ".config/nats/context.txt", "pw\n")
	save(xdg, "nats/context/prod.json", `{"url": "nats://xdg:4222"}`)
	file := save(t.TempDir(), "elsewhere/ops.json", `{"url": "nats://file:4222"}`)
	notJSON := save(t.TempDir(), "broken.json", `{"url":`)
	base := map[string]string{"HOME": home}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	tests := []struct {
		name     string
		env      map[string]string
		flags    Options
		selected bool
		want     string
		check    func(t *testing.T, d *Dialer, o nats.Options)
	}{
		{name: "a name under ~/.config/nats/context", env: with("NATS_CONTEXT", "prod"), check: func(t *testing.T, d *Dialer, o nats.Options) {
			assert.Equal(t, "tls://nats.prod:4222", d.URL())
			assert.Equal(t, "prod", d.Context())
			assert.NotEmpty(t, o.Nkey, "its nkey")
			assert.True(t, o.TLSHandshakeFirst, "tls_first is honoured")
			assert.Equal(t, "_INBOX_ops", o.InboxPrefix, "inbox_prefix is honoured")
		}},
		{name: "a name under XDG_CONFIG_HOME", env: with("NATS_CONTEXT", "prod", "XDG_CONFIG_HOME", xdg),
			check: func(t *testing.T, d *Dialer, _ nats.Options) { assert.Equal(t, "nats://xdg:4222", d.URL()) }},
		{name: "a path to a .json", env: with("NATS_CONTEXT", file),
			check: func(t *testing.T, d *Dialer, _ nats.Options) { assert.Equal(t, "nats://file:4222", d.URL()) }},
		{name: "a path from --context", flags: flags("--context", file),
			check: func(t *testing.T, d *Dialer, _ nats.Options) { assert.Equal(t, "nats://file:4222", d.URL()) }},
		{name: "~/ in its file paths is HOME", env: with("NATS_CONTEXT", "tilde"),
			check: func(t *testing.T, _ *Dialer, o nats.Options) { assert.NotEmpty(t, o.Nkey) }},
		{name: "NATS_URL over the context's url", env: with("NATS_CONTEXT", "prod", "NATS_URL", "nats://env:4222"),
			check: func(t *testing.T, d *Dialer, _ nats.Options) { assert.Equal(t, "nats://env:4222", d.URL()) }},
		{name: "NATS_INBOX_PREFIX over the context's", env: with("NATS_CONTEXT", "prod", "NATS_INBOX_PREFIX", "_INBOX_env"),
			check: func(t *testing.T, _ *Dialer, o nats.Options) { assert.Equal(t, "_INBOX_env", o.InboxPrefix) }},
		{name: "NATS_PASSWORD over the context's password", env: with("NATS_CONTEXT", "pw", "NATS_PASSWORD", "env-pw"),
			check: func(t *testing.T, d *Dialer, o nats.Options) {
				assert.Equal(t, "alice", o.User)
				assert.Equal(t, "env-pw", o.Password)
			}},
		{name: "the context's user and a token are two ways", env: with("NATS_CONTEXT", "pw", "NATS_TOKEN", "t"),
			want: `NATS credentials come from user and password of NATS context "pw" and NATS_TOKEN: give one way to authenticate`},
		{name: "the context's nkey and --creds are two ways", env: with("NATS_CONTEXT", "prod"), flags: flags("--creds", seed),
			want: `NATS credentials come from --creds and nkey of NATS context "prod"`},
		{name: "a missing context", env: with("NATS_CONTEXT", "missing"),
			want: `NATS context "missing" (NATS_CONTEXT): open ` + home + `/.config/nats/context/missing.json: no such file or directory (` + "`nats context ls` lists them and `nats context save` makes one"},
		{name: "a missing context from --context", flags: flags("--context", "missing"), want: `NATS context "missing" (--context)`},
		{name: "not JSON", env: with("NATS_CONTEXT", notJSON), want: "is not a nats context"},

		{name: "the selected context, when asked and nothing else is given", env: with(), selected: true,
			check: func(t *testing.T, d *Dialer, o nats.Options) {
				assert.Equal(t, "pw", d.Context())
				assert.Equal(t, "nats://h:4222", d.URL())
				assert.Equal(t, "alice", o.User)
			}},
		{name: "not the selected context when a setting is given", env: with("NATS_URL", "nats://env:4222"), selected: true,
			check: func(t *testing.T, d *Dialer, o nats.Options) {
				assert.Empty(t, d.Context())
				assert.Empty(t, o.User)
			}},
		{name: "not the selected context unless asked (the services)", env: with(),
			check: func(t *testing.T, d *Dialer, _ nats.Options) {
				assert.Empty(t, d.Context())
				assert.Equal(t, "nats://127.0.0.1:4222", d.URL())
			}},
		{name: "no context selected", env: map[string]string{"HOME": t.TempDir()}, selected: true,
			check: func(t *testing.T, d *Dialer, _ nats.Options) { assert.Empty(t, d.Context()) }},
	}
	for field, value := range map[string]string{"nsc": `"nsc://op/acc/user"`, "user_jwt": `"eyJ..."`, "jetstream_domain": `"hub"`,
		"jetstream_api_prefix": `"x"`, "jetstream_event_prefix": `"x"`, "socks_proxy": `"s:1080"`,
		"windows_cert_store": `"windowscurrentuser"`, "windows_ca_certs_match": `["ca"]`} {
		path := save(t.TempDir(), "refused.json", `{"url": "nats://h:4222", "`+field+`": `+value+`}`)
		tests = append(tests, tests[0])
		last := &tests[len(tests)-1]
		last.name, last.env, last.want, last.check = "refused: "+field, with("NATS_CONTEXT", path), `"`+field+`" is not supported by pollgrid: `, nil
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := FromEnv(mapEnv(tt.env)).With(tt.flags)
			o.SelectedContext = tt.selected
			d, err := New(o, mapEnv(tt.env))
			if tt.want != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.want)
				assert.NotContains(t, err.Error(), "ctx-pw")
				return
			}
			require.NoError(t, err)
			tt.check(t, d, applied(t, d))
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
