package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pollgrid/pollgrid/pkg/redact"
)

// Explain says what a NATS error means for whoever runs the program, naming
// the setting to fix: the one the value came from (NATS_CREDS, --creds, a
// context), or the variable that would give it. It keeps err for errors.Is;
// an error it cannot explain is returned as it is.
func (d *Dialer) Explain(err error) error {
	if err == nil {
		return nil
	}
	if d == nil {
		d = &Dialer{urlFrom: URL.Variable()}
	}
	hint := d.hint(err)
	if hint == "" {
		return err
	}
	return fmt.Errorf("%s (%w)", hint, err)
}

// Why is why nc is not connected: its last error, explained, or its status.
func (d *Dialer) Why(nc *nats.Conn) error {
	if nc == nil {
		return errors.New("no connection")
	}
	if err := nc.LastError(); err != nil {
		return d.Explain(err)
	}
	return fmt.Errorf("connection %s", strings.ToLower(nc.Status().String()))
}

// named is from, or the variable of s when it was not given.
func named(from string, s Setting) string {
	if from != "" {
		return from
	}
	return s.Variable()
}

// urlNamed is where the URL came from; the address too when it is the
// default, which nobody wrote.
func (d *Dialer) urlNamed() string {
	if d.urlFrom == defaultURLFrom {
		return nats.DefaultURL + " (the default: " + URL.Variable() + " is not set)"
	}
	return d.urlFrom
}

// urlSetting is the setting that fixes the URL.
func (d *Dialer) urlSetting() string {
	if d.urlFrom == defaultURLFrom {
		return URL.Variable()
	}
	return named(d.urlFrom, URL)
}

func (d *Dialer) hint(err error) string {
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var certInvalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var opErr *net.OpError
	creds := named(d.authFrom, Creds)
	if d.authWhat != "creds file" {
		creds = Creds.Variable()
	}
	switch {
	case errors.Is(err, nats.ErrAuthorization) && d.authFrom == "":
		return fmt.Sprintf("NATS refused our credentials: we gave none; set %s, %s, %s, or %s and %s",
			Creds.Variable(), NKey.Variable(), Token.Variable(), User.Variable(), Password.Variable())
	case errors.Is(err, nats.ErrAuthorization):
		return fmt.Sprintf("NATS refused our credentials: check the %s in %s against the server's accounts", d.authWhat, d.authFrom)
	case errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAccountAuthExpired):
		return "our NATS credentials expired: issue a new .creds file for " + creds
	case errors.Is(err, nats.ErrAuthRevoked):
		return "our NATS credentials were revoked: issue a new .creds file for " + creds
	case errors.Is(err, nats.ErrPermissionViolation):
		if d.permissions != "" {
			return "NATS denied a subject to our user: " + d.permissions
		}
		return "NATS denied a subject to our user: give it the permissions of its role in deploy/nats/pollgrid.conf (docs/operate.md, Access control)"
	case errors.Is(err, nats.ErrSecureConnRequired):
		return fmt.Sprintf("NATS requires TLS: write tls:// in %s, and set %s if its certificate is not signed by a public CA", d.urlSetting(), named(d.caFrom, CA))
	case errors.As(err, &hostname):
		return fmt.Sprintf("NATS's TLS certificate does not name the host in %s: connect by a name the certificate holds", d.urlSetting())
	case errors.As(err, &certInvalid):
		return "NATS's TLS certificate is not valid (expired, or not for a server)"
	case errors.As(err, &unknownAuthority), errors.As(err, &verify):
		if d.caFrom != "" {
			return fmt.Sprintf("NATS's TLS certificate is not signed by the CA in %s: give the CA certificate that signed it", d.caFrom)
		}
		return fmt.Sprintf("NATS's TLS certificate is not signed by a CA we trust: set %s to the CA certificate that signed it", CA.Variable())
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount), errors.Is(err, nats.ErrNoResponders):
		return "JetStream does not answer: start nats-server with JetStream (-js), and enable it for our account"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, nats.ErrNoServers):
		return fmt.Sprintf("nothing accepts connections at %s: is nats-server running there?", d.urlNamed())
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Sprintf("%s cannot be reached: check the host and port", d.urlNamed())
	case errors.Is(err, fs.ErrNotExist):
		return "a NATS credentials or certificate file is missing"
	case strings.Contains(err.Error(), "remote error: tls: "), errors.Is(err, nats.ErrTLS) && strings.Contains(err.Error(), "after TLS handshake"):
		// The server ended the handshake; under TLS 1.3 it judges our
		// certificate only after the client is done, so a refusal may
		// arrive as the connection closing.
		if d.certFrom == "" {
			return fmt.Sprintf("NATS wants a client certificate: set %s and %s", Cert.Variable(), Key.Variable())
		}
		return fmt.Sprintf("NATS refused our client certificate (%s): give one signed by a CA the server trusts", d.certFrom)
	case errors.Is(err, nats.ErrTLS), strings.Contains(err.Error(), "tls: "):
		return fmt.Sprintf("the TLS handshake with NATS failed: check %s, and %s and %s if the server wants a client certificate",
			named(d.caFrom, CA), named(d.certFrom, Cert), Key.Variable())
	}
	return ""
}

// RedactURL shows a server list for logs and errors: passwords, and tokens
// written as the user (nats://token@host), masked.
func RedactURL(urls string) string {
	var out []string
	for _, raw := range strings.Split(urls, ",") {
		shown := redact.URL(strings.TrimSpace(raw))
		if u, err := url.Parse(shown); err == nil && u.User != nil {
			if _, hasPassword := u.User.Password(); !hasPassword && u.User.Username() != "" {
				u.User = url.User("TOKEN")
				shown = strings.Replace(u.String(), "TOKEN@", redact.Mask+"@", 1)
			}
		}
		out = append(out, shown)
	}
	return strings.Join(out, ",")
}
