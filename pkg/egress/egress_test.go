package egress_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/egress"
)

func TestRestricted(t *testing.T) {
	tests := []struct {
		name   string
		addr   string
		reason string // "" when the address is allowed by default
	}{
		{"cloud metadata", "169.254.169.254", "link-local"},
		{"loopback", "127.0.0.1", "loopback"},
		{"loopback anywhere in 127/8", "127.42.0.9", "loopback"},
		{"IPv6 loopback", "::1", "loopback"},
		{"IPv4-mapped loopback", "::ffff:127.0.0.1", "loopback"},
		{"NAT64 of metadata", "64:ff9b::a9fe:a9fe", "link-local"},
		{"private 10/8", "10.20.30.40", "private"},
		{"private 172.16/12", "172.31.255.1", "private"},
		{"private 192.168/16", "192.168.1.1", "private"},
		{"IPv6 unique local", "fd00::1", "private"},
		{"IPv6 link-local", "fe80::1", "link-local"},
		{"unspecified", "0.0.0.0", "unspecified"},
		{"IPv6 unspecified", "::", "unspecified"},
		{"this network", "0.1.2.3", "this network"},
		{"carrier-grade NAT (some clouds' metadata)", "100.100.100.200", "carrier-grade NAT"},
		{"multicast", "224.0.0.1", "multicast"},
		{"broadcast", "255.255.255.255", "reserved"},
		{"public IPv4", "93.184.216.34", ""},
		{"public IPv6", "2606:2800:220:1:248:1893:25c8:1946", ""},
		{"just outside 172.16/12", "172.32.0.1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, restricted := egress.Restricted(netip.MustParseAddr(tt.addr))
			if tt.reason == "" {
				assert.False(t, restricted, "refused as %s", reason)
				return
			}
			assert.True(t, restricted)
			assert.Contains(t, reason, tt.reason)
		})
	}
}

func TestParse(t *testing.T) {
	a, err := egress.Parse("UPSTREAM_ALLOW", []string{" 10.0.0.0/8", "192.168.1.5", "API.Internal.", "*.corp.example", "::1", "[fd00::7]", "10.0.0.0/8"})
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.0/8,192.168.1.5/32,::1/128,fd00::7/128,api.internal,*.corp.example", a.String())

	assert.True(t, a.AllowsAddr(netip.MustParseAddr("10.9.9.9")))
	assert.True(t, a.AllowsAddr(netip.MustParseAddr("::ffff:10.9.9.9")), "IPv4-mapped addresses match their IPv4 CIDR")
	assert.True(t, a.AllowsAddr(netip.MustParseAddr("192.168.1.5")))
	assert.False(t, a.AllowsAddr(netip.MustParseAddr("192.168.1.6")))
	assert.False(t, a.AllowsAddr(netip.MustParseAddr("127.0.0.1")))

	assert.True(t, a.AllowsHost("api.internal"))
	assert.True(t, a.AllowsHost("API.internal."))
	assert.True(t, a.AllowsHost("jira.corp.example"))
	assert.False(t, a.AllowsHost("corp.example"), "a wildcard covers subdomains only")
	assert.False(t, a.AllowsHost("evilcorp.example"))
	assert.False(t, a.AllowsHost("api.internal.evil.example"))

	assert.True(t, egress.Loopback().AllowsAddr(netip.MustParseAddr("127.0.0.1")))
	assert.True(t, egress.Loopback().Merge(a).AllowsHost("api.internal"))
	assert.True(t, egress.Allowlist{}.IsZero())
}

func TestParseRejectsBadEntries(t *testing.T) {
	tests := []struct {
		name, entry, want string
	}{
		{"empty", "", "is empty"},
		{"everything", "*", `write "0.0.0.0/0" and "::/0"`},
		{"a URL", "http://10.0.0.1/", "is a URL"},
		{"a port", "api.internal:8080", "has a port"},
		{"bad CIDR", "10.0.0.0/33", "is not a CIDR"},
		{"host bits", "10.1.0.0/8", `write "10.0.0.0/8"`},
		{"junk", "not a host!", "is not a host name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := egress.Parse("allow_hosts", []string{"10.0.0.0/8", tt.entry})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "allow_hosts[1]: ")
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	_, err := egress.Parse("UPSTREAM_ALLOW", []string{"a b", "c d"})
	assert.Contains(t, err.Error(), "UPSTREAM_ALLOW[0]")
	assert.Contains(t, err.Error(), "UPSTREAM_ALLOW[1]", "every bad entry at once")
}

func TestRefusedErrorNamesAddressAndSetting(t *testing.T) {
	err := error(&egress.RefusedError{Host: "metadata.internal", Addr: netip.MustParseAddrPort("169.254.169.254:80"), Reason: "a link-local address"})
	assert.True(t, errors.Is(err, egress.ErrRefused))
	assert.Equal(t, `outbound guard refused to connect to 169.254.169.254:80 ("metadata.internal" resolved to it): a link-local address `+
		`(to allow it, add "169.254.169.254" or a CIDR holding it to the connector's config.allow_hosts, or to the worker's UPSTREAM_ALLOW for every connector)`, err.Error())
	err = &egress.RefusedError{Host: "127.0.0.1", Addr: netip.MustParseAddrPort("127.0.0.1:6379"), Reason: "a loopback address"}
	assert.NotContains(t, err.Error(), "resolved")
}
