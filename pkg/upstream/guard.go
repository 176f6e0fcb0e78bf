package upstream

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/pollgrid/pollgrid/pkg/egress"
)

// guard is the outbound guard: the client's dialer, refusing connections
// to the addresses egress.Restricted names unless allow lets them through.
// It checks the address each socket is opened to (net.Dialer.Control), after
// name resolution, so that a name resolving to 127.0.0.1, a DNS answer that
// changes between a check and the dial, and a redirect to a private address
// are all refused alike.
type guard struct {
	dialer net.Dialer
	allow  egress.Allowlist
}

// DialContext is the base transport's dialer.
func (g *guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	if g.allow.AllowsHost(host) {
		// Allowed by name: whatever it resolves to.
		return g.dialer.DialContext(ctx, network, address)
	}
	d := g.dialer
	d.Control = func(_, resolved string, _ syscall.RawConn) error { return g.check(host, resolved) }
	return d.DialContext(ctx, network, address)
}

// check decides on the resolved "ip:port" a socket is about to connect to.
func (g *guard) check(host, resolved string) error {
	ap, err := netip.ParseAddrPort(resolved)
	if err != nil {
		// Fail closed: an address we cannot read is not one we checked.
		return fmt.Errorf("outbound guard: cannot read the address %q being dialled: %w", resolved, err)
	}
	if g.allow.AllowsAddr(ap.Addr()) {
		return nil
	}
	if reason, restricted := egress.Restricted(ap.Addr()); restricted {
		return &egress.RefusedError{Host: host, Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), Reason: reason}
	}
	return nil
}

// checkURL refuses, before a request is sent, a URL whose host is a
// restricted address written out: through a proxy the dial never sees it.
func (g *guard) checkURL(u *url.URL) error {
	host := u.Hostname()
	addr, err := netip.ParseAddr(host)
	if err != nil || g.allow.AllowsHost(host) {
		return nil // a name: checked when dialled
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443"}[u.Scheme]
		if port == "" {
			port = "80"
		}
	}
	return g.check(host, net.JoinHostPort(addr.String(), port))
}

// proxyHosts allows the HTTP proxies the environment names (the transport
// uses http.ProxyFromEnvironment): a proxy on the private network is where
// the operator sends every request, not a destination a connector chose.
func proxyHosts() egress.Allowlist {
	var hosts []string
	for _, key := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		v := strings.TrimSpace(os.Getenv(key))
		if v == "" {
			continue
		}
		if !strings.Contains(v, "://") {
			v = "http://" + v
		}
		if u, err := url.Parse(v); err == nil && u.Hostname() != "" {
			hosts = append(hosts, u.Hostname())
		}
	}
	allow, _ := egress.Parse("HTTPS_PROXY", hosts) // a proxy we cannot parse allows nothing
	return allow
}

// safeOnRedirect are the request headers kept when a redirect leaves the
// host the request was made to: every other header a connector set may
// carry a credential (Authorization, X-Api-Token, DD-API-KEY, ...), whatever
// its name.
var safeOnRedirect = map[string]bool{
	"Accept": true, "Accept-Language": true, "User-Agent": true, "Cache-Control": true, "Pragma": true,
}

// redirectHeaders drops the Referer (it would carry the previous URL, query
// keys and all) and, once the chain has left the first request's host,
// every header but safeOnRedirect; it refuses to send a request body
// (307/308) to another host.
func redirectHeaders(req *http.Request, via []*http.Request) error {
	req.Header.Del("Referer")
	origin := via[0].URL.Host
	left := !strings.EqualFold(req.URL.Host, origin)
	for _, r := range via[1:] {
		left = left || !strings.EqualFold(r.URL.Host, origin)
	}
	if !left {
		return nil
	}
	if req.Body != nil && req.Body != http.NoBody {
		return fmt.Errorf("refusing a %s redirect to %s: it would send the request body to another host", req.Method, ShowURL(req.URL))
	}
	for name := range req.Header {
		if !safeOnRedirect[http.CanonicalHeaderKey(name)] {
			delete(req.Header, name)
		}
	}
	return nil
}
