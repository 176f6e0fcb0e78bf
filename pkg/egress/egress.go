// Package egress decides which network destinations pollgrid may call.
//
// Connectors are configured by people and fed by upstreams: a URL in a
// config, a redirect or a next-page link can point a worker at a cloud
// metadata service (169.254.169.254), at Redis on 127.0.0.1, or at anything
// on the private network behind it. Such destinations are refused unless an
// Allowlist names them: UPSTREAM_ALLOW for every connector of a worker,
// config.allow_hosts for one connector. pkg/upstream enforces this on the
// address each connection is actually opened to, redirects included.
package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ErrRefused is what every refusal wraps: errors.Is(err, ErrRefused).
var ErrRefused = errors.New("destination refused by the outbound guard")

// special are the ranges refused by default besides those netip classifies
// (loopback, link-local, private, unspecified, multicast), with why.
var special = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), `a "this network" address`},
	{netip.MustParsePrefix("100.64.0.0/10"), "a shared (carrier-grade NAT) address, internal to a provider's network"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF special-purpose address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
}

// nat64 is the well-known NAT64 prefix: its addresses carry an IPv4
// address in their last four bytes, which decides.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Restricted reports whether addr is refused by default, and why, in words
// for an error message.
func Restricted(addr netip.Addr) (reason string, restricted bool) {
	addr = addr.Unmap()
	if addr.Is6() && nat64.Contains(addr) {
		b := addr.As16()
		return Restricted(netip.AddrFrom4([4]byte(b[12:])))
	}
	switch {
	case !addr.IsValid():
		return "not an address", true
	case addr.IsUnspecified():
		return "the unspecified address", true
	case addr.IsLoopback():
		return "a loopback address", true
	case addr.IsLinkLocalUnicast():
		return "a link-local address, where cloud metadata services live", true
	case addr.IsPrivate():
		return "a private address", true
	case addr.IsMulticast(), addr.IsLinkLocalMulticast(), addr.IsInterfaceLocalMulticast():
		return "a multicast address", true
	}
	for _, s := range special {
		if s.prefix.Contains(addr) {
			return s.reason, true
		}
	}
	return "", false
}

// Allowlist names destinations let through although Restricted refuses
// them: host names (exact, or every subdomain with "*.example.internal"),
// addresses and CIDRs. The zero Allowlist allows nothing more.
type Allowlist struct {
	prefixes []netip.Prefix
	hosts    []string // lower case, no trailing dot
	domains  []string // ".example.internal" for "*.example.internal"
}

// Loopback allows 127.0.0.0/8 and ::1: for tests and `make run`, whose
// upstreams run on the same machine.
func Loopback() Allowlist {
	return Allowlist{prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
}

// Parse reads entries (hosts, addresses or CIDRs); field names where they
// come from in errors ("UPSTREAM_ALLOW", "allow_hosts"), and every bad
// entry is reported at once.
func Parse(field string, entries []string) (Allowlist, error) {
	var a Allowlist
	var errs []error
	for i, raw := range entries {
		entry := strings.TrimSpace(raw)
		if err := a.add(entry); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %q %w", field, i, entry, err))
		}
	}
	if len(errs) > 0 {
		return Allowlist{}, errors.Join(errs...)
	}
	a.normalize()
	return a, nil
}

const entryExample = `(write a host such as "api.internal" or "*.corp.example", an address such as "10.1.2.3", or a CIDR such as "10.0.0.0/8")`

func (a *Allowlist) add(entry string) error {
	switch {
	case entry == "":
		return errors.New("is empty " + entryExample)
	case entry == "*":
		return errors.New(`would allow everything: write "0.0.0.0/0" and "::/0" if you really mean to turn the outbound guard off`)
	case strings.Contains(entry, "://"):
		return errors.New("is a URL: write its host alone " + entryExample)
	}
	if strings.Contains(entry, "/") {
		p, err := netip.ParsePrefix(entry)
		if err != nil {
			return errors.New("is not a CIDR " + entryExample)
		}
		if p != p.Masked() {
			return fmt.Errorf("has bits set past its prefix length (write %q)", p.Masked())
		}
		a.prefixes = append(a.prefixes, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr())))
		return nil
	}
	if addr, err := netip.ParseAddr(strings.Trim(entry, "[]")); err == nil {
		addr = addr.Unmap().WithZone("")
		a.prefixes = append(a.prefixes, netip.PrefixFrom(addr, addr.BitLen()))
		return nil
	}
	host := strings.TrimSuffix(strings.ToLower(entry), ".")
	wildcard := strings.HasPrefix(host, "*.")
	if wildcard {
		host = host[2:]
	}
	if !validHost(host) {
		if strings.Contains(host, ":") {
			return errors.New("has a port: write the host alone " + entryExample)
		}
		return errors.New("is not a host name, an address or a CIDR " + entryExample)
	}
	if wildcard {
		a.domains = append(a.domains, "."+host)
	} else {
		a.hosts = append(a.hosts, host)
	}
	return nil
}

// unmapBits is how many leading bits an IPv4-mapped prefix loses once
// unmapped (::ffff:10.0.0.0/104 is 10.0.0.0/8).
func unmapBits(addr netip.Addr) int {
	if addr.Is4In6() {
		return 96
	}
	return 0
}

func validHost(host string) bool {
	if host == "" || len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if c != '-' && c != '_' && (c < 'a' || c > 'z') && (c < '0' || c > '9') {
				return false
			}
		}
	}
	return true
}

func (a *Allowlist) normalize() {
	slices.SortFunc(a.prefixes, func(x, y netip.Prefix) int {
		if c := x.Addr().Compare(y.Addr()); c != 0 {
			return c
		}
		return x.Bits() - y.Bits()
	})
	a.prefixes = slices.Compact(a.prefixes)
	slices.Sort(a.hosts)
	a.hosts = slices.Compact(a.hosts)
	slices.Sort(a.domains)
	a.domains = slices.Compact(a.domains)
}

// Merge returns what a or b allows.
func (a Allowlist) Merge(b Allowlist) Allowlist {
	out := Allowlist{
		prefixes: slices.Concat(a.prefixes, b.prefixes),
		hosts:    slices.Concat(a.hosts, b.hosts),
		domains:  slices.Concat(a.domains, b.domains),
	}
	out.normalize()
	return out
}

// IsZero reports whether a allows nothing beyond the default.
func (a Allowlist) IsZero() bool {
	return len(a.prefixes) == 0 && len(a.hosts) == 0 && len(a.domains) == 0
}

// AllowsHost reports whether host (a name from a URL, as dialled) is allowed
// by name, whatever it resolves to. An address in a URL is checked with
// AllowsAddr instead.
func (a Allowlist) AllowsHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if slices.Contains(a.hosts, host) {
		return true
	}
	for _, d := range a.domains {
		if strings.HasSuffix(host, d) {
			return true
		}
	}
	return false
}

// AllowsAddr reports whether addr lies in one of a's addresses or CIDRs.
func (a Allowlist) AllowsAddr(addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	for _, p := range a.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// String lists the entries, comma-separated in a stable order: a key for
// caches and a value for logs.
func (a Allowlist) String() string {
	parts := make([]string, 0, len(a.prefixes)+len(a.hosts)+len(a.domains))
	for _, p := range a.prefixes {
		parts = append(parts, p.String())
	}
	parts = append(parts, a.hosts...)
	for _, d := range a.domains {
		parts = append(parts, "*"+d)
	}
	return strings.Join(parts, ",")
}

// RefusedError is a connection the outbound guard refused.
type RefusedError struct {
	// Host is the host as the URL named it; Addr is where it resolved to.
	Host string
	Addr netip.AddrPort
	// Reason says what kind of address Addr is.
	Reason string
}

func (e *RefusedError) Error() string {
	where := e.Addr.String()
	if e.Host != "" && e.Host != e.Addr.Addr().WithZone("").String() {
		where += fmt.Sprintf(" (%q resolved to it)", e.Host)
	}
	return fmt.Sprintf("outbound guard refused to connect to %s: %s (to allow it, add %q or a CIDR holding it to the connector's config.allow_hosts, or to the worker's UPSTREAM_ALLOW for every connector)",
		where, e.Reason, e.Addr.Addr().WithZone("").String())
}

// Is makes errors.Is(err, ErrRefused) true for every refusal.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }
