// Package egress decides which network destinations steps may reach. A server operator gives
// allow and deny lists of hosts and CIDRs (--egress-allow, --egress-deny), and the server and
// the controller refuse link-local addresses unless told otherwise; the HTTP, webhook,
// notification, metrics and email actions then dial through a Policy, which checks the host
// name asked for and every address it resolves to, and dials only an address it checked, so
// that a name re-pointed between the check and the dial (DNS rebinding) cannot slip through.
package egress

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// rule is one entry of a list: a CIDR (an address is a /32 or /128), a host name, or a
// wildcard *.domain that matches the domain's subdomains.
type rule struct {
	text   string
	prefix netip.Prefix
	host   string
	suffix string
}

func parseRule(s string) (rule, error) {
	s = strings.TrimSpace(s)
	r := rule{text: s}
	switch {
	case s == "":
		return r, fmt.Errorf("an empty entry")
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return r, fmt.Errorf("%q: not a CIDR: %w", s, err)
		}
		r.prefix = p.Masked()
	case strings.HasPrefix(s, "*."):
		r.suffix = strings.ToLower(s[1:])
	default:
		if a, err := netip.ParseAddr(s); err == nil {
			r.prefix = netip.PrefixFrom(a, a.BitLen())
		} else {
			r.host = strings.ToLower(strings.TrimSuffix(s, "."))
		}
	}
	return r, nil
}

func (r rule) matchesHost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return (r.host != "" && r.host == host) || (r.suffix != "" && strings.HasSuffix(host, r.suffix))
}

func (r rule) matchesAddr(a netip.Addr) bool {
	return r.prefix.IsValid() && r.prefix.Contains(a)
}

// Policy is the lists. A destination is allowed when the allow list is empty or one of its
// entries matches the host name or the address, and no entry of the deny list matches
// either: deny wins. An unspecified address (0.0.0.0, ::), which reaches the local host, is
// checked as the loopback address too. With denyLinkLocal, link-local addresses are refused
// before the lists are consulted.
type Policy struct {
	allow, deny   []rule
	denyLinkLocal bool
	// Resolver looks host names up; nil means net.DefaultResolver.
	resolver *net.Resolver
	dialer   net.Dialer
}

// Options are an operator's settings: the lists, whose entries are CIDRs (10.0.0.0/8,
// fd00::/8), addresses, host names, or *.example.com for its subdomains, and whether
// link-local addresses are refused.
type Options struct {
	Allow, Deny []string
	// DenyLinkLocal refuses link-local destinations (169.254.0.0/16, fe80::/10), where cloud
	// providers serve instance metadata and credentials, whatever the lists say. The server
	// and the controller set it unless their operator gives --egress-allow-link-local.
	DenyLinkLocal bool
}

// New parses the lists. With nothing to check (both lists empty, link-local allowed) it
// returns nil: no policy.
func New(opts Options) (*Policy, error) {
	if len(opts.Allow) == 0 && len(opts.Deny) == 0 && !opts.DenyLinkLocal {
		return nil, nil
	}
	p := &Policy{resolver: net.DefaultResolver, denyLinkLocal: opts.DenyLinkLocal}
	for _, list := range []struct {
		name  string
		in    []string
		rules *[]rule
	}{{"allow", opts.Allow, &p.allow}, {"deny", opts.Deny, &p.deny}} {
		for _, s := range list.in {
			r, err := parseRule(s)
			if err != nil {
				return nil, fmt.Errorf("egress %s list: %w", list.name, err)
			}
			*list.rules = append(*list.rules, r)
		}
	}
	return p, nil
}

// DeniedError says which destination a policy refused, and by which entry.
type DeniedError struct {
	Host string
	Addr netip.Addr
	// Rule is the deny entry that matched, or "" when no allow entry did.
	Rule string
	// LinkLocal says that the address is link-local, refused by default.
	LinkLocal bool
}

func (e *DeniedError) Error() string {
	dest := e.Host
	if e.Addr.IsValid() && e.Addr.String() != e.Host {
		dest += " (" + e.Addr.String() + ")"
	}
	if e.Addr.IsUnspecified() {
		dest += ", which reaches this host's loopback,"
	}
	switch {
	case e.LinkLocal:
		return fmt.Sprintf("destination %s is link-local (cloud instance metadata), denied by default; the server's operator allows it with --egress-allow-link-local", dest)
	case e.Rule != "":
		return fmt.Sprintf("destination %s is denied by the egress deny entry %q; the server's operator sets --egress-deny", dest, e.Rule)
	}
	return fmt.Sprintf("destination %s is not in the egress allow list; the server's operator sets --egress-allow", dest)
}

// asChecked are the addresses a is checked as: itself, and for an unspecified address, which
// a connection takes for the local host, the loopback address of its family.
func asChecked(a netip.Addr) []netip.Addr {
	switch {
	case !a.IsUnspecified():
		return []netip.Addr{a}
	case a.Is4():
		return []netip.Addr{a, netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	default:
		return []netip.Addr{a, netip.IPv6Loopback()}
	}
}

// check decides one resolved address of host.
func (p *Policy) check(host string, a netip.Addr) error {
	if p.denyLinkLocal && a.IsLinkLocalUnicast() {
		return &DeniedError{Host: host, Addr: a, LinkLocal: true}
	}
	addrs := asChecked(a)
	matches := func(r rule) bool {
		return r.matchesHost(host) || slices.ContainsFunc(addrs, r.matchesAddr)
	}
	for _, r := range p.deny {
		if matches(r) {
			return &DeniedError{Host: host, Addr: a, Rule: r.text}
		}
	}
	if len(p.allow) == 0 || slices.ContainsFunc(p.allow, matches) {
		return nil
	}
	return &DeniedError{Host: host, Addr: a}
}

// DialContext dials address (host:port) if the policy allows it: it resolves the host, checks
// each address, and dials the first allowed one. A refusal is a terminal step error: trying
// again cannot mend it.
func (p *Policy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ips, err := p.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		addrs = ips
	}
	var denied error
	for _, a := range addrs {
		a = a.Unmap()
		if err := p.check(host, a); err != nil {
			if denied == nil {
				denied = err
			}
			continue
		}
		return p.dialer.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
	}
	if denied == nil {
		denied = fmt.Errorf("%s: no address", host)
	}
	return nil, engine.Terminal(v1alpha1.ReasonExecute, denied)
}

// Client returns an HTTP client that dials through the policy, verifies TLS certificates, and
// ignores proxy settings (a proxy would dial on the policy's behalf, unchecked).
func (p *Policy) Client() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = p.DialContext
	return &http.Client{Transport: t}
}
