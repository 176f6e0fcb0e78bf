package upstream

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/egress"
)

// byName is srv's URL with the host written "localhost", which resolves to
// loopback: what the guard sees only once the name is resolved.
func byName(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	u.Host = net.JoinHostPort("localhost", u.Port())
	return u.String()
}

func okServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(srv.Close)
	return srv
}

func TestGuardRefusesRestrictedDestinationsByDefault(t *testing.T) {
	srv := okServer(t)
	c := NewClient(Options{})
	tests := []struct {
		name, url, want string
	}{
		{"cloud metadata", "http://169.254.169.254/latest/meta-data/", "169.254.169.254:80: a link-local address"},
		{"a loopback address in the URL", srv.URL, "a loopback address"},
		{"a name that resolves to loopback", byName(t, srv), `("localhost" resolved to it): a loopback address`},
		{"the unspecified address", "http://0.0.0.0:6379/", "0.0.0.0:6379: the unspecified address"},
		{"a private address", "https://10.1.2.3/api", "10.1.2.3:443: a private address"},
		{"IPv6 loopback", "http://[::1]:6379/", "[::1]:6379: a loopback address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Fetch(t.Context(), c, Request{URL: tt.url})
			require.Error(t, err)
			assert.True(t, errors.Is(err, egress.ErrRefused), "%v", err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), "config.allow_hosts", "the error names the setting that allows it")
			assert.Contains(t, err.Error(), "UPSTREAM_ALLOW")
		})
	}
}

func TestGuardAllowsWhatTheProcessAllows(t *testing.T) {
	srv := okServer(t)
	for _, allow := range [][]string{{"127.0.0.0/8"}, {"127.0.0.1"}, {"localhost"}} {
		t.Run(strings.Join(allow, ","), func(t *testing.T) {
			a, err := egress.Parse("UPSTREAM_ALLOW", allow)
			require.NoError(t, err)
			answer, err := Fetch(t.Context(), NewClient(Options{Allow: a}), Request{URL: byName(t, srv)})
			require.NoError(t, err)
			assert.Equal(t, "ok", string(answer.Body))
		})
	}
}

func TestConnectorAllowHostsWidenOnlyThatConnector(t *testing.T) {
	srv := okServer(t)
	shared := NewClient(Options{})
	allow, err := egress.Parse("config.allow_hosts", []string{"localhost"})
	require.NoError(t, err)

	mine := Client(connector.Deps{HTTP: shared, AllowHosts: allow})
	require.NotSame(t, shared, mine)
	assert.Same(t, mine, Client(connector.Deps{HTTP: shared, AllowHosts: allow}), "connectors with the same allowlist share one client")

	// The allowed connector polls by name and leaves an idle connection in
	// its pool; the shared client must still not reach that host.
	_, err = Fetch(t.Context(), mine, Request{URL: byName(t, srv)})
	require.NoError(t, err)
	_, err = Fetch(t.Context(), shared, Request{URL: byName(t, srv)})
	assert.ErrorIs(t, err, egress.ErrRefused, "a connection one connector may open is never reused by another")

	// Built outside a worker (no shared client), a connector still gets its allowance.
	_, err = Fetch(t.Context(), Client(connector.Deps{AllowHosts: allow}), Request{URL: byName(t, srv)})
	assert.NoError(t, err)
	_, err = Fetch(t.Context(), Client(connector.Deps{}), Request{URL: byName(t, srv)})
	assert.ErrorIs(t, err, egress.ErrRefused)

	mine.CloseIdleConnections()
	shared.CloseIdleConnections()
}

func TestRedirectToARestrictedAddressIsRefused(t *testing.T) {
	target := okServer(t)
	hop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/secret", http.StatusFound) // 127.0.0.1:<port>
	}))
	t.Cleanup(hop.Close)
	// Only the first host is allowed, by name: the redirect to an address
	// on loopback is refused like a first request would be.
	allow, err := egress.Parse("UPSTREAM_ALLOW", []string{"localhost"})
	require.NoError(t, err)
	_, err = Fetch(t.Context(), NewClient(Options{Allow: allow}), Request{URL: byName(t, hop)})
	require.Error(t, err)
	assert.ErrorIs(t, err, egress.ErrRefused)
	assert.Contains(t, err.Error(), "a loopback address")
}

func TestRedirectToAnotherHostDropsCredentials(t *testing.T) {
	var mu sync.Mutex
	var got http.Header
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		_, _ = io.WriteString(w, "[]")
	}))
	t.Cleanup(other.Close)
	var sameHost http.Header
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/landed", http.StatusFound)
		case "/landed":
			mu.Lock()
			sameHost = r.Header.Clone()
			mu.Unlock()
		case "/post":
			http.Redirect(w, r, other.URL, http.StatusTemporaryRedirect)
		default: // to another host: 127.0.0.1 instead of localhost
			http.Redirect(w, r, other.URL+"/items", http.StatusFound)
		}
	}))
	t.Cleanup(first.Close)
	allow, err := egress.Parse("UPSTREAM_ALLOW", []string{"127.0.0.0/8", "localhost"})
	require.NoError(t, err)
	c := NewClient(Options{Allow: allow})
	header := http.Header{
		"X-Api-Token":   {"s3cret-token"},
		"Authorization": {"Bearer s3cret"},
		"Dd-Api-Key":    {"s3cret-key"},
		"Cookie":        {"session=s3cret"},
		"Accept":        {"application/json"},
	}

	_, err = Fetch(t.Context(), c, Request{URL: byName(t, first) + "/items?api_key=s3cret-query", Header: header})
	require.NoError(t, err)
	mu.Lock()
	for _, name := range []string{"X-Api-Token", "Authorization", "Dd-Api-Key", "Cookie", "Referer"} {
		assert.Empty(t, got.Get(name), "%s must not follow a redirect to another host", name)
	}
	assert.Equal(t, "application/json", got.Get("Accept"))
	assert.Contains(t, got.Get("User-Agent"), "pollgrid/")
	mu.Unlock()

	// A redirect on the same host keeps the connector's headers (never the Referer).
	_, err = Fetch(t.Context(), c, Request{URL: byName(t, first) + "/same?api_key=s3cret-query", Header: header})
	require.NoError(t, err)
	mu.Lock()
	assert.Equal(t, "s3cret-token", sameHost.Get("X-Api-Token"))
	assert.Empty(t, sameHost.Get("Referer"), "the Referer would carry the query's key")
	mu.Unlock()

	// A 307 would resend the body (which may hold a credential) elsewhere: refused.
	_, err = Fetch(t.Context(), c, Request{Method: http.MethodPost, URL: byName(t, first) + "/post", Body: []byte(`{"token": "s3cret"}`)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "would send the request body to another host")
	assert.NotContains(t, err.Error(), "s3cret")
}

func TestProxyHostsAreAllowed(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://10.0.0.8:3128")
	t.Setenv("HTTP_PROXY", "proxy.corp.internal:3128")
	allow := proxyHosts()
	assert.True(t, allow.AllowsHost("proxy.corp.internal"))
	assert.True(t, allow.AllowsAddr(netip.MustParseAddr("10.0.0.8")))
	assert.False(t, allow.AllowsAddr(netip.MustParseAddr("10.0.0.9")))
}

// The guard checks the address the socket connects to, not only the URL.
func TestGuardChecksTheDialledAddress(t *testing.T) {
	g := &guard{}
	err := g.check("upstream.example", "127.0.0.1:6379")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `127.0.0.1:6379 ("upstream.example" resolved to it): a loopback address`)
	assert.NoError(t, g.check("upstream.example", "93.184.216.34:443"))
	assert.Error(t, g.check("upstream.example", "[::ffff:169.254.169.254]:80"), "IPv4-mapped IPv6 is unmapped first")
	assert.Error(t, g.check("upstream.example", "not-an-address"), "fail closed")
}
