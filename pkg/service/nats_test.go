package service

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/config"
)

func writeTemp(t *testing.T, name, content string) string {
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestNATSAuthFromTheEnvironment(t *testing.T) {
	creds := writeTemp(t, "app.creds", "not read until connect")
	ca := writeTemp(t, "ca.pem", "-")
	token := writeTemp(t, "token", "s3cret-token\n")

	a, err := readNATSAuth(config.MapEnv(map[string]string{"NATS_CREDS": creds, "NATS_CA": ca}), "tls://nats:4222")
	require.NoError(t, err)
	assert.Equal(t, creds, a.creds)
	assert.Equal(t, ca, a.ca)

	a, err = readNATSAuth(config.MapEnv(map[string]string{"NATS_TOKEN_FILE": token}), "nats://nats:4222")
	require.NoError(t, err)
	assert.Equal(t, "s3cret-token", a.token, "the trailing newline of a mounted file is dropped")
	_, secrets, err := a.options()
	require.NoError(t, err)
	assert.Contains(t, secrets, "s3cret-token", "the token is redacted from logs")
}

func TestNATSContext(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, ".config", "nats", "context")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	creds := writeTemp(t, "ctx.creds", "-")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prod.json"),
		[]byte(`{"description": "prod", "url": "tls://nats.prod:4222", "creds": "`+creds+`", "ca": "", "tls_first": true}`), 0o600))

	a, err := readNATSAuth(config.MapEnv(map[string]string{"NATS_CONTEXT": "prod", "HOME": home}), "nats://127.0.0.1:4222")
	require.NoError(t, err)
	assert.Equal(t, "tls://nats.prod:4222", a.url, "the context's URL, as NATS_URL is not set")
	assert.Equal(t, creds, a.creds)
	assert.True(t, a.tlsFirst)

	a, err = readNATSAuth(config.MapEnv(map[string]string{"NATS_CONTEXT": "prod", "HOME": home, "NATS_URL": "nats://other:4222"}), "nats://other:4222")
	require.NoError(t, err)
	assert.Equal(t, "nats://other:4222", a.url, "NATS_URL overrides the context")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "jwt.json"), []byte(`{"url": "nats://x:4222", "user_jwt": "eyJ..."}`), 0o600))
	_, err = readNATSAuth(config.MapEnv(map[string]string{"NATS_CONTEXT": "jwt", "HOME": home}), "")
	assert.ErrorContains(t, err, `"user_jwt" is not supported by pollgrid`)

	_, err = readNATSAuth(config.MapEnv(map[string]string{"NATS_CONTEXT": "missing", "HOME": home}), "")
	assert.ErrorContains(t, err, "NATS_CONTEXT=missing")
	assert.ErrorContains(t, err, "nats context save")
}

func TestNATSAuthProblemsNameTheFix(t *testing.T) {
	creds := writeTemp(t, "app.creds", "-")
	nkey := writeTemp(t, "seed.nk", "-")
	tests := []struct {
		name string
		env  map[string]string
		url  string
		want string
	}{
		{"two ways to authenticate", map[string]string{"NATS_CREDS": creds, "NATS_NKEY": nkey}, "nats://h:4222",
			"NATS credentials come from NATS_CREDS and NATS_NKEY: give one way to authenticate"},
		{"a password in the URL and creds", map[string]string{"NATS_CREDS": creds}, "nats://u:p@h:4222",
			"NATS credentials come from NATS_URL and NATS_CREDS"},
		{"a missing file", map[string]string{"NATS_CREDS": "/run/secrets/nope.creds"}, "nats://h:4222",
			"NATS_CREDS (from NATS_CREDS): stat /run/secrets/nope.creds: no such file or directory (mount the file there, or unset it)"},
		{"half a client certificate", map[string]string{"NATS_CERT": creds}, "nats://h:4222",
			"NATS_CERT and NATS_KEY go together"},
		{"token twice", map[string]string{"NATS_TOKEN": "t", "NATS_TOKEN_FILE": creds}, "nats://h:4222",
			"NATS_TOKEN and NATS_TOKEN_FILE are both set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readNATSAuth(config.MapEnv(tt.env), tt.url)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), ":p@")
		})
	}
	_, _, err := natsAuth{nkey: nkey}.options()
	assert.ErrorContains(t, err, "a file holding an nkey seed")
}

func TestExplainNATS(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nats.ErrAuthorization, "NATS refused our credentials"},
		{nats.ErrAuthExpired, "expired"},
		{nats.ErrSecureConnRequired, "NATS requires TLS: write tls:// in NATS_URL"},
		{x509.UnknownAuthorityError{}, "set NATS_CA"},
		{nats.ErrNoResponders, "start nats-server with JetStream (-js)"},
		{nats.ErrPermissionViolation, "allow publish and subscribe"},
	}
	for _, tt := range tests {
		got := explainNATS(tt.err)
		assert.Contains(t, got.Error(), tt.want)
		assert.True(t, errors.Is(got, tt.err) || errors.As(got, new(x509.UnknownAuthorityError)), "keeps the cause: %v", got)
	}
	plain := errors.New("something else")
	assert.Same(t, plain, explainNATS(plain))
}
