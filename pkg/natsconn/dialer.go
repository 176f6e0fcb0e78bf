package natsconn

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// Dialer is how to reach NATS once every rule is checked: the servers, the
// nats.Options that authenticate and secure the connection, and what to say
// when NATS refuses.
type Dialer struct {
	urls    string
	urlFrom string
	context string
	opts    []nats.Option
	secrets []string
	// auth is how we authenticate, for explanations: what ("creds file")
	// and where it came from ("NATS_CREDS"); empty for none.
	authWhat, authFrom string
	caFrom, certFrom   string
	permissions        string
}

// defaultURLFrom is where the URL came from when nothing gave one.
const defaultURLFrom = "the default URL"

// method is one way to authenticate that a process was given.
type method struct{ what, from string }

// New checks o against the rules (the package doc) and returns how to dial.
// It reads the context, the token file and every other file named; it does
// not dial.
func New(o Options, lookup Env) (*Dialer, error) {
	merged, ctxName, tlsFirst, err := withContext(o, lookup)
	if err != nil {
		return nil, err
	}
	d := &Dialer{urls: merged.Get(URL), urlFrom: merged.From(URL), context: ctxName, permissions: o.Permissions}
	if d.urls == "" {
		d.urls, d.urlFrom = nats.DefaultURL, defaultURLFrom
	}
	if err := checkRules(merged, d.urls, d.urlFrom); err != nil {
		return nil, err
	}
	if err := d.build(merged, tlsFirst); err != nil {
		return nil, err
	}
	return d, nil
}

// withContext is o over its context, if it has one, and the context's name.
func withContext(o Options, lookup Env) (Options, string, bool, error) {
	ref, from := o.Get(Context), o.From(Context)
	if ref == "" && o.SelectedContext && o.empty() {
		ref, from = selectedContext(lookup), "selected with `nats context select`"
	}
	if ref == "" {
		return o, "", false, nil
	}
	lower, tlsFirst, err := loadContext(lookup, ref, from)
	if err != nil {
		return o, ref, false, err
	}
	return lower.With(o), ref, tlsFirst, nil
}

// checkRules are the rules that need no file: one way to authenticate, a
// user with a password, a certificate with its key.
func checkRules(o Options, urls, urlFrom string) error {
	if o.Get(Token) != "" && o.Get(TokenFile) != "" {
		return fmt.Errorf("%s and %s are both set: keep one", o.From(Token), o.From(TokenFile))
	}
	if (o.Get(User) == "") != (o.Get(Password) == "") {
		if o.Get(User) != "" {
			return fmt.Errorf("%s gives a user without a password: set %s too (a token goes in %s)", o.From(User), Password.Variable(), Token.Variable())
		}
		return fmt.Errorf("%s gives a password without a user: set %s too", o.From(Password), User.Variable())
	}
	if methods := authMethods(o, urls, urlFrom); len(methods) > 1 {
		var from []string
		for _, m := range methods {
			from = append(from, m.from)
		}
		return fmt.Errorf("NATS credentials come from %s: give one way to authenticate (a user and password, a creds file, an nkey or a token): keep one, remove the others",
			strings.Join(from, " and "))
	}
	if (o.Get(Cert) == "") != (o.Get(Key) == "") {
		given, missing := Cert, Key
		if o.Get(Cert) == "" {
			given, missing = Key, Cert
		}
		return fmt.Errorf("%s is set without %s: a client certificate and its key go together, set both or neither", o.From(given), missing.Variable())
	}
	if p := o.Get(InboxPrefix); p != "" {
		if err := nats.CustomInboxPrefix(p)(&nats.Options{}); err != nil {
			return fmt.Errorf("%s=%q: not an inbox prefix: write subject tokens without wildcards or a trailing dot, such as _INBOX_consumer", o.From(InboxPrefix), p)
		}
	}
	return nil
}

// authMethods are the ways to authenticate o gives, in a fixed order.
func authMethods(o Options, urls, urlFrom string) []method {
	var out []method
	for _, raw := range strings.Split(urls, ",") {
		if u, err := url.Parse(strings.TrimSpace(raw)); err == nil && u.User != nil {
			what := "token"
			if _, ok := u.User.Password(); ok {
				what = "user and password"
			}
			out = append(out, method{what, urlFrom})
			break
		}
	}
	if o.Get(User) != "" {
		out = append(out, method{"user and password", userFrom(o)})
	}
	if o.Get(Creds) != "" {
		out = append(out, method{"creds file", o.From(Creds)})
	}
	if o.Get(NKey) != "" {
		out = append(out, method{"nkey seed", o.From(NKey)})
	}
	if o.Get(Token) != "" {
		out = append(out, method{"token", o.From(Token)})
	} else if o.Get(TokenFile) != "" {
		out = append(out, method{"token", o.From(TokenFile)})
	}
	return out
}

// userFrom names where the user and password came from: NATS_USER/--password,
// or "user and password of NATS context "prod"".
func userFrom(o Options) string {
	user, password := o.From(User), o.From(Password)
	if ctx, ok := strings.CutPrefix(user, settings[User].contextField+" of "); ok && password == settings[Password].contextField+" of "+ctx {
		return "user and password of " + ctx
	}
	if user == password {
		return user
	}
	return user + "/" + password
}

// build reads the files o names and makes the nats.Options. Each option is
// tried on a scratch nats.Options: what nats.Connect would refuse (a CA
// that is not PEM, a key that does not match its certificate, a creds file
// without a seed) is refused here, naming the setting.
func (d *Dialer) build(o Options, tlsFirst bool) error {
	for s := range numSettings {
		if path := o.Get(s); settings[s].file && path != "" {
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("%s: %w (put the file there, or give another path)", o.From(s), err)
			}
		}
	}
	token, tokenFrom := o.Get(Token), o.From(Token)
	if path := o.Get(TokenFile); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("%s: %w (put the file there, or give another path)", o.From(TokenFile), err)
		}
		token, tokenFrom = strings.TrimSpace(string(b)), o.From(TokenFile)
		if token == "" {
			return fmt.Errorf("%s: %s is empty: it should hold the token", tokenFrom, path)
		}
	}
	if methods := authMethods(o, d.urls, d.urlFrom); len(methods) == 1 {
		d.authWhat, d.authFrom = methods[0].what, methods[0].from
	}
	d.caFrom, d.certFrom = o.From(CA), o.From(Cert)

	add := func(opt nats.Option, s Setting, hint string) error {
		if err := opt(&nats.Options{}); err != nil {
			return fmt.Errorf("%s: %w (%s)", o.From(s), err, hint)
		}
		d.opts = append(d.opts, opt)
		return nil
	}
	switch {
	case o.Get(Creds) != "":
		if err := checkCreds(o.Get(Creds)); err != nil {
			return fmt.Errorf("%s: %w (a .creds file holds a user JWT and its nkey seed: `nsc generate creds`)", o.From(Creds), err)
		}
		d.opts = append(d.opts, nats.UserCredentials(o.Get(Creds)))
	case o.Get(NKey) != "":
		opt, err := nats.NkeyOptionFromSeed(o.Get(NKey))
		if err != nil {
			return fmt.Errorf("%s: %w (a file holding an nkey seed, SU...)", o.From(NKey), err)
		}
		d.opts = append(d.opts, opt)
	case token != "":
		d.opts = append(d.opts, nats.Token(token))
		d.secrets = append(d.secrets, token)
	case o.Get(User) != "":
		d.opts = append(d.opts, nats.UserInfo(o.Get(User), o.Get(Password)))
		d.secrets = append(d.secrets, o.Get(Password))
	}
	if o.Get(CA) != "" {
		if err := add(nats.RootCAs(o.Get(CA)), CA, "PEM certificates of the CA that signed the server's"); err != nil {
			return err
		}
	}
	if o.Get(Cert) != "" {
		if err := add(nats.ClientCert(o.Get(Cert), o.Get(Key)), Cert, "a PEM certificate and the PEM key it was made for"); err != nil {
			return err
		}
	}
	if tlsFirst {
		d.opts = append(d.opts, nats.TLSHandshakeFirst())
	}
	if p := o.Get(InboxPrefix); p != "" {
		d.opts = append(d.opts, nats.CustomInboxPrefix(p))
	}
	for _, raw := range strings.Split(d.urls, ",") {
		if u, err := url.Parse(strings.TrimSpace(raw)); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok && p != "" {
				d.secrets = append(d.secrets, p)
			} else if u.User.Username() != "" {
				d.secrets = append(d.secrets, u.User.Username()) // a token written as the user
			}
		}
	}
	return nil
}

// checkCreds reads the creds file as nats.Connect will: a user JWT, and a
// seed that signs.
func checkCreds(path string) error {
	var scratch nats.Options
	if err := nats.UserCredentials(path)(&scratch); err != nil {
		return err
	}
	if _, err := scratch.UserJWT(); err != nil {
		return err
	}
	if _, err := scratch.SignatureCB([]byte("pollgrid")); err != nil {
		if cause := errors.Unwrap(err); cause != nil {
			return cause // without the path, which the caller names
		}
		return err
	}
	return nil
}

// URL is the server list, as given (it may carry a password: log Redacted).
func (d *Dialer) URL() string { return d.urls }

// Redacted is the server list without passwords or tokens, for logs.
func (d *Dialer) Redacted() string { return RedactURL(d.urls) }

// Context is the name of the nats CLI context used, "" for none.
func (d *Dialer) Context() string { return d.context }

// Secrets are the passwords and tokens the connection uses, for a redactor.
func (d *Dialer) Secrets() []string { return append([]string(nil), d.secrets...) }

// Options are the nats.Options that authenticate and secure the
// connection; Connect adds them.
func (d *Dialer) Options() []nats.Option { return append([]nats.Option(nil), d.opts...) }

// Connect dials the servers with Options and then extra (a name, timeouts,
// handlers). Its error is the client's: Explain says what it means.
func (d *Dialer) Connect(extra ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(d.urls, append(d.Options(), extra...)...)
}
