package natsconn

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/tlstest"
)

// Each way to authenticate and to secure the connection, against a real
// nats-server that wants it: the right settings connect, the wrong ones are
// refused and the explanation names the setting to fix.
func TestAgainstARealServer(t *testing.T) {
	passwordNATS := startNATS(t, server.Options{Users: []*server.User{{Username: "alice", Password: "right-pw"}}})
	tokenNATS := startNATS(t, server.Options{Authorization: "right-token"})
	public, seed := nkeyUser(t)
	_, otherSeed := nkeyUser(t)
	nkeyNATS := startNATS(t, server.Options{Nkeys: []*server.NkeyUser{{Nkey: public}}})
	jwtNATS, creds, strangerCreds := operatorNATS(t)
	ca := tlstest.NewCA(t)
	otherCA := tlstest.NewCA(t)
	client := ca.Client(t, "pollgrid")
	stranger := otherCA.Client(t, "stranger")
	tlsServer := tlsNATS(t, ca)
	addr := func(ns *server.Server) string { return ns.Addr().String() }
	home := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(home, ".config/nats/context"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(home, ".config/nats/context/tls.json"), []byte(fmt.Sprintf(
		`{"url": "tls://%s", "ca": %q, "cert": %q, "key": %q}`, addr(tlsServer), ca.CertFile, client.CertFile, client.KeyFile)), 0o600))

	tests := []struct {
		name  string
		env   map[string]string
		flags Options
		// want is a substring of the explained error; empty: it connects.
		want string
	}{
		{name: "user and password", env: map[string]string{"NATS_URL": "nats://" + addr(passwordNATS), "NATS_USER": "alice", "NATS_PASSWORD": "right-pw"}},
		{name: "user and password in the URL", env: map[string]string{"NATS_URL": "nats://alice:right-pw@" + addr(passwordNATS)}},
		{name: "user and password flags", flags: flags("--server", "nats://"+addr(passwordNATS), "--user", "alice", "--password", "right-pw")},
		{name: "a wrong password", env: map[string]string{"NATS_URL": "nats://" + addr(passwordNATS), "NATS_USER": "alice", "NATS_PASSWORD": "wrong-pw"},
			want: "NATS refused our credentials: check the user and password in NATS_USER/NATS_PASSWORD against the server's accounts"},
		{name: "a wrong password in the URL", env: map[string]string{"NATS_URL": "nats://alice:wrong-pw@" + addr(passwordNATS)},
			want: "NATS refused our credentials: check the user and password in NATS_URL"},
		{name: "no credentials", env: map[string]string{"NATS_URL": "nats://" + addr(passwordNATS)},
			want: "NATS refused our credentials: we gave none; set NATS_CREDS, NATS_NKEY, NATS_TOKEN, or NATS_USER and NATS_PASSWORD"},

		{name: "a token", env: map[string]string{"NATS_URL": "nats://" + addr(tokenNATS), "NATS_TOKEN": "right-token"}},
		{name: "a token file", env: map[string]string{"NATS_URL": "nats://" + addr(tokenNATS), "NATS_TOKEN_FILE": writeFile(t, "token", "right-token\n")}},
		{name: "a token in the URL", env: map[string]string{"NATS_URL": "nats://right-token@" + addr(tokenNATS)}},
		{name: "a wrong token flag", flags: flags("--server", "nats://"+addr(tokenNATS), "--token", "wrong-token"),
			want: "NATS refused our credentials: check the token in --token"},

		{name: "an nkey", env: map[string]string{"NATS_URL": "nats://" + addr(nkeyNATS), "NATS_NKEY": seed}},
		{name: "another nkey", env: map[string]string{"NATS_URL": "nats://" + addr(nkeyNATS), "NATS_NKEY": otherSeed},
			want: "NATS refused our credentials: check the nkey seed in NATS_NKEY"},

		{name: "a creds file", env: map[string]string{"NATS_URL": "nats://" + addr(jwtNATS), "NATS_CREDS": creds}},
		{name: "creds of an account the server does not know", env: map[string]string{"NATS_URL": "nats://" + addr(jwtNATS), "NATS_CREDS": strangerCreds},
			want: "NATS refused our credentials: check the creds file in NATS_CREDS"},

		{name: "mutual TLS", env: map[string]string{"NATS_URL": "tls://" + addr(tlsServer), "NATS_CA": ca.CertFile, "NATS_CERT": client.CertFile, "NATS_KEY": client.KeyFile}},
		{name: "mutual TLS from a context", env: map[string]string{"NATS_CONTEXT": "tls", "HOME": home}},
		{name: "TLS without the CA", env: map[string]string{"NATS_URL": "tls://" + addr(tlsServer), "NATS_CERT": client.CertFile, "NATS_KEY": client.KeyFile},
			want: "NATS's TLS certificate is not signed by a CA we trust: set NATS_CA to the CA certificate that signed it"},
		{name: "TLS with another CA", flags: flags("--server", "tls://"+addr(tlsServer), "--tlsca", otherCA.CertFile, "--tlscert", client.CertFile, "--tlskey", client.KeyFile),
			want: "NATS's TLS certificate is not signed by the CA in --tlsca: give the CA certificate that signed it"},
		{name: "TLS without a client certificate", env: map[string]string{"NATS_URL": "tls://" + addr(tlsServer), "NATS_CA": ca.CertFile},
			want: "NATS wants a client certificate: set NATS_CERT and NATS_KEY"},
		{name: "TLS with a client certificate of another CA", env: map[string]string{"NATS_URL": "tls://" + addr(tlsServer), "NATS_CA": ca.CertFile,
			"NATS_CERT": stranger.CertFile, "NATS_KEY": stranger.KeyFile}, want: "NATS refused our client certificate (NATS_CERT)"},
		{name: "nothing listening", env: map[string]string{"NATS_URL": "nats://127.0.0.1:1"},
			want: "nothing accepts connections at NATS_URL: is nats-server running there?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(FromEnv(mapEnv(tt.env)).With(tt.flags), mapEnv(tt.env))
			require.NoError(t, err)
			nc, err := d.Connect(nats.Timeout(5*time.Second), nats.NoReconnect())
			if tt.want == "" {
				require.NoError(t, err, "%v", d.Explain(err))
				defer nc.Close()
				assert.NoError(t, nc.Flush())
				return
			}
			require.Error(t, err)
			explained := d.Explain(err)
			t.Log(explained)
			assert.Contains(t, explained.Error(), tt.want)
			assert.ErrorIs(t, explained, err, "the cause is kept")
			for _, secret := range []string{"right-pw", "wrong-pw", "right-token", "wrong-token"} {
				assert.NotContains(t, explained.Error(), secret)
			}
		})
	}
}

// A user allowed replies only on its own inbox prefix (deploy/nats/
// pollgrid.conf's CONSUMER) gets them with NATS_INBOX_PREFIX or a context's
// inbox_prefix, and not without.
func TestInboxPrefixForAUserAllowedOnlyItsOwn(t *testing.T) {
	ns := startNATS(t, server.Options{Users: []*server.User{
		{Username: "service", Password: "pw"},
		{Username: "consumer", Password: "pw", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"ask"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX_consumer.>"}},
		}},
	}})
	responder, err := nats.Connect("nats://service:pw@" + ns.Addr().String())
	require.NoError(t, err)
	defer responder.Close()
	_, err = responder.Subscribe("ask", func(m *nats.Msg) { _ = m.Respond([]byte("answer")) })
	require.NoError(t, err)
	require.NoError(t, responder.Flush())

	ctx := writeFile(t, "consumer.json", fmt.Sprintf(`{"url": "nats://%s", "user": "consumer", "password": "pw", "inbox_prefix": "_INBOX_consumer"}`, ns.Addr()))
	tests := []struct {
		name    string
		env     map[string]string
		answers bool
	}{
		{"NATS_INBOX_PREFIX", map[string]string{"NATS_URL": "nats://consumer:pw@" + ns.Addr().String(), "NATS_INBOX_PREFIX": "_INBOX_consumer"}, true},
		{"a context's inbox_prefix", map[string]string{"NATS_CONTEXT": ctx}, true},
		{"no prefix", map[string]string{"NATS_URL": "nats://consumer:pw@" + ns.Addr().String()}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(FromEnv(mapEnv(tt.env)), mapEnv(tt.env))
			require.NoError(t, err)
			nc, err := d.Connect(nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
			require.NoError(t, err)
			defer nc.Close()
			msg, err := nc.Request("ask", nil, time.Second)
			if !tt.answers {
				assert.Error(t, err, "the reply cannot reach _INBOX.>")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "answer", string(msg.Data))
		})
	}
}
