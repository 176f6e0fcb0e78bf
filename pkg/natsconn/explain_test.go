package natsconn

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The explanations the real server cannot easily be made to give: each
// names the setting to fix, where the value came from when it was given.
func TestExplain(t *testing.T) {
	creds := writeFile(t, "x.creds", "-")
	dialer := func(env map[string]string, permissions string) *Dialer {
		d := &Dialer{urls: env["NATS_URL"], urlFrom: "NATS_URL", permissions: permissions}
		if env["NATS_URL"] == "" {
			d.urlFrom = defaultURLFrom
		}
		if env["NATS_CREDS"] != "" {
			d.authWhat, d.authFrom = "creds file", "NATS_CREDS"
		}
		return d
	}
	tests := []struct {
		name string
		d    *Dialer
		err  error
		want string
	}{
		{"expired creds", dialer(map[string]string{"NATS_CREDS": creds}, ""), nats.ErrAuthExpired, "our NATS credentials expired: issue a new .creds file for NATS_CREDS"},
		{"revoked creds", dialer(nil, ""), nats.ErrAuthRevoked, "our NATS credentials were revoked: issue a new .creds file for NATS_CREDS"},
		{"a subject denied, the program's permissions", dialer(nil, "allow publish and subscribe on pollgrid.>"), nats.ErrPermissionViolation,
			"NATS denied a subject to our user: allow publish and subscribe on pollgrid.>"},
		{"a subject denied", dialer(nil, ""), nats.ErrPermissionViolation, "give it the permissions of its role in deploy/nats/pollgrid.conf"},
		{"TLS required", dialer(map[string]string{"NATS_URL": "nats://h:4222"}, ""), nats.ErrSecureConnRequired,
			"NATS requires TLS: write tls:// in NATS_URL, and set NATS_CA if its certificate is not signed by a public CA"},
		{"a certificate for another host", dialer(map[string]string{"NATS_URL": "tls://h:4222"}, ""), x509.HostnameError{Certificate: &x509.Certificate{}, Host: "h"},
			"NATS's TLS certificate does not name the host in NATS_URL"},
		{"JetStream off", dialer(nil, ""), nats.ErrNoResponders, "start nats-server with JetStream (-js)"},
		{"nothing at the default URL", dialer(nil, ""), nats.ErrNoServers,
			"nothing accepts connections at nats://127.0.0.1:4222 (the default: NATS_URL is not set)"},
		{"an unknown host", dialer(map[string]string{"NATS_URL": "nats://nowhere:4222"}, ""), &net.OpError{Op: "dial", Err: errors.New("no such host")},
			"NATS_URL cannot be reached: check the host and port"},
		{"a file gone", dialer(nil, ""), fmt.Errorf("nats: %w", fs.ErrNotExist), "a NATS credentials or certificate file is missing"},
		{"no dialer", nil, nats.ErrAuthorization, "NATS refused our credentials: we gave none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.d.Explain(tt.err)
			require.Error(t, got)
			assert.Contains(t, got.Error(), tt.want)
			assert.ErrorIs(t, got, tt.err, "the cause is kept")
		})
	}
	plain := errors.New("something else")
	assert.Same(t, plain, (&Dialer{}).Explain(plain), "what it cannot explain is returned as it is")
	assert.NoError(t, (&Dialer{}).Explain(nil))
	assert.EqualError(t, (&Dialer{}).Why(nil), "no connection")
}
