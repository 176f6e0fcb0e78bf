// Package upstream is the one HTTP client every connector goes through. It
// is polite to upstreams (a User-Agent that names pollgrid, conditional
// requests, Retry-After and rate-limit headers honoured across workers) and
// safe for us (timeouts on every phase, a cap on the decompressed body,
// limited redirects, no credentials in error texts, no connections to
// loopback, link-local, private or unspecified addresses unless allowed:
// see guard.go).
package upstream

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/egress"
)

// Version is pollgrid's version as sent in the User-Agent; set at build time.
var Version = "dev"

// DefaultMaxBodyBytes caps a response body after decompression.
const DefaultMaxBodyBytes = 8 << 20

// ErrBodyTooLarge is returned while reading a body past the cap.
var ErrBodyTooLarge = errors.New("response body too large")

// Options configure the client. Zero values take the defaults.
type Options struct {
	// MaxBodyBytes caps every response body after decompression; default 8 MiB.
	MaxBodyBytes int64
	// MaxRedirects bounds redirects followed; default 5. HTTPS to HTTP
	// redirects are refused.
	MaxRedirects int
	// UserAgent is sent when the connector sets none;
	// default "pollgrid/<Version> (+https://github.com/pollgrid/pollgrid)".
	UserAgent string
	// DialTimeout, TLSHandshakeTimeout and ResponseHeaderTimeout bound each
	// phase; defaults 5s, 5s and 30s. The whole request is bounded by the
	// connector's timeout through the context.
	DialTimeout           time.Duration
	TLSHandshakeTimeout   time.Duration
	ResponseHeaderTimeout time.Duration
	// IdleConnsPerHost is how many idle connections to one upstream host
	// are kept for reuse: as many as polls may run at once, so that a
	// worker polling one host from many connectors reuses its connections
	// instead of opening new ones. Default 8.
	IdleConnsPerHost int
	// Wrap decorates the transport (tracing); nil for none.
	Wrap func(http.RoundTripper) http.RoundTripper
	// Allow lists the destinations every connector may reach although the
	// outbound guard refuses loopback, link-local, private and unspecified
	// addresses (the worker's UPSTREAM_ALLOW); a connector's own
	// config.allow_hosts adds to it (Client). The zero value allows none:
	// tests whose upstream is an httptest server pass egress.Loopback().
	Allow egress.Allowlist
}

func (o Options) withDefaults() Options {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxRedirects <= 0 {
		o.MaxRedirects = 5
	}
	if o.UserAgent == "" {
		o.UserAgent = "pollgrid/" + Version + " (+https://github.com/pollgrid/pollgrid)"
	}
	if o.IdleConnsPerHost <= 0 {
		o.IdleConnsPerHost = 8
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = 5 * time.Second
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = 30 * time.Second
	}
	return o
}

// NewClient returns the shared client. One per process is enough: Client
// derives a connector's own from it when the connector allows more hosts.
func NewClient(o Options) *http.Client {
	o = o.withDefaults()
	g := &guard{
		dialer: net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second},
		allow:  o.Allow.Merge(proxyHosts()),
	}
	base := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           g.DialContext,
		TLSHandshakeTimeout:   o.TLSHandshakeTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		MaxIdleConns:          max(100, o.IdleConnsPerHost),
		MaxIdleConnsPerHost:   o.IdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	var rt http.RoundTripper = &transport{base: base, opts: o, guard: g}
	if o.Wrap != nil {
		rt = o.Wrap(rt)
	}
	return &http.Client{
		Transport: &root{RoundTripper: rt, opts: o},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			// via holds the requests made so far: the first and one per
			// redirect followed, so len(via) is one more than the redirects
			// followed before req.
			if len(via) > o.MaxRedirects {
				return fmt.Errorf("stopped after %d redirects", o.MaxRedirects)
			}
			// The hop that answered the redirect decides: a chain that
			// reached https must not fall back to http (http->https->http).
			if via[len(via)-1].URL.Scheme == "https" && req.URL.Scheme != "https" {
				return fmt.Errorf("refusing a redirect from https to %s", req.URL.Scheme)
			}
			return redirectHeaders(req, via)
		},
	}
}

// Client returns the client a connector built with deps uses: deps.HTTP
// (or, when it is nil, a new client with the default Options: a connector
// built outside a worker, in a test or a tool), widened by the connector's
// config.allow_hosts. A client NewClient did not build is returned as is.
func Client(deps connector.Deps) *http.Client {
	if deps.HTTP == nil {
		return NewClient(Options{Allow: deps.AllowHosts})
	}
	if deps.AllowHosts.IsZero() {
		return deps.HTTP
	}
	if r, ok := deps.HTTP.Transport.(*root); ok {
		return r.widen(deps.AllowHosts)
	}
	return deps.HTTP
}

// maxWidened bounds the clients a root keeps for distinct allowlists;
// past it, connectors get a client of their own each.
const maxWidened = 256

// root is the outermost transport of a client NewClient built. It keeps
// the client's Options, so that a connector that allows more hosts gets a
// client like it with its own connection pool: a connection opened to an
// address one connector may reach is never reused for another connector
// that may not.
type root struct {
	http.RoundTripper
	opts Options

	mu      sync.Mutex
	widened map[string]*http.Client
}

func (r *root) widen(allow egress.Allowlist) *http.Client {
	opts := r.opts
	opts.Allow = opts.Allow.Merge(allow)
	key := opts.Allow.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.widened[key]; ok {
		return c
	}
	c := NewClient(opts)
	if len(r.widened) < maxWidened {
		if r.widened == nil {
			r.widened = map[string]*http.Client{}
		}
		r.widened[key] = c
	}
	return c
}

// CloseIdleConnections closes the idle connections of the client and of
// the clients widened from it.
func (r *root) CloseIdleConnections() {
	closeIdle(r.RoundTripper)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.widened {
		c.CloseIdleConnections()
	}
}

func closeIdle(rt http.RoundTripper) {
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// transport adds the User-Agent, caps bodies and records what the upstream
// says about when to come back.
type transport struct {
	base  http.RoundTripper
	opts  Options
	guard *guard
}

// CloseIdleConnections closes the base transport's idle connections.
func (t *transport) CloseIdleConnections() { closeIdle(t.base) }

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	// An address written in the URL is refused before anything is sent,
	// even through a proxy (which resolves names itself: behind one, the
	// proxy must enforce egress for names).
	if err := t.guard.checkURL(req.URL); err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // a RoundTripper closes the body, even on error
		}
		return nil, err
	}
	budget := budgetFrom(req.Context())
	if budget != nil {
		if err := budget.Take(req.Context()); err != nil {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, err
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", t.opts.UserAgent)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	until, why := backOffHint(resp, now)
	if obs := observationFrom(req.Context()); obs != nil && !until.IsZero() {
		obs.record(until, why)
	}
	if budget != nil {
		// The upstream's word on its limit holds for every connector on
		// the budget, whichever worker polls it.
		if !until.IsZero() {
			budget.Follow(req.Context(), until, 0)
		} else if left, reset, ok := rateLimitLeft(resp, now); ok {
			budget.Follow(req.Context(), reset, left)
		}
	}
	// The base transport decompresses gzip itself, so the cap counts
	// decompressed bytes: a gzip bomb stops at the cap.
	resp.Body = &capReader{rc: resp.Body, left: t.opts.MaxBodyBytes, max: t.opts.MaxBodyBytes}
	return resp, nil
}

type capReader struct {
	rc   io.ReadCloser
	left int64
	max  int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// Is there more? Then the body is over the cap.
		var one [1]byte
		n, err := c.rc.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: more than %d bytes (raise the connector's max body size, or narrow the query)", ErrBodyTooLarge, c.max)
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *capReader) Close() error { return c.rc.Close() }
