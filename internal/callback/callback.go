package callback

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrRefused is wrapped by every refusal of a callback URL or address.
var ErrRefused = errors.New("callback destination refused")

// Policy says which callback destinations are allowed.
type Policy struct {
	// Allow lists hosts ("hooks.internal.example") and networks
	// ("10.20.0.0/16", "127.0.0.1/32") callbacks may reach although they are
	// not public. Empty: public addresses only.
	Allow []string
	// AllowHTTP permits plain http:// URLs (dev mode, e.g. to a local
	// receiver with Allow: [127.0.0.1/32]). Default: https only.
	AllowHTTP bool
	// Self are the gateway's own addresses: "host" (every port of it, e.g.
	// WEBSITE_HOSTNAME) or "host:port" (the Host a request came in on). A
	// callback there would call the gateway's own routes, so it is refused
	// unless Allow lists the host by name.
	Self []string
}

// check holds a parsed Policy.
type check struct {
	hosts map[string]bool
	nets  []netip.Prefix
	http  bool
	self  map[string]bool
}

func (p Policy) compile() (check, error) {
	c := check{hosts: map[string]bool{}, http: p.AllowHTTP, self: map[string]bool{}}
	for _, a := range p.Allow {
		a = strings.TrimSpace(strings.ToLower(a))
		switch {
		case a == "":
		case strings.Contains(a, "/"):
			pfx, err := netip.ParsePrefix(a)
			if err != nil {
				return c, fmt.Errorf("callback allow %q: %w", a, err)
			}
			c.nets = append(c.nets, pfx.Masked())
		default:
			if ip, err := netip.ParseAddr(a); err == nil {
				c.nets = append(c.nets, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
				continue
			}
			c.hosts[strings.TrimSuffix(a, ".")] = true
		}
	}
	for _, s := range p.Self {
		s = strings.ToLower(strings.TrimSpace(s))
		if h, port, err := net.SplitHostPort(s); err == nil {
			c.self[net.JoinHostPort(strings.TrimSuffix(h, "."), port)] = true // that port only
		} else if h := hostOnly(s); h != "" {
			c.self[h] = true // a name without a port: every port of it
		}
	}
	return c, nil
}

// Validate reports a malformed allow-list entry (for config validation).
func (p Policy) Validate() error { _, err := p.compile(); return err }

func hostOnly(hostport string) string {
	h := strings.ToLower(strings.TrimSpace(hostport))
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	return strings.TrimSuffix(strings.Trim(h, "[]"), ".")
}

// nonPublic are the networks a callback may not reach unless allowed.
var nonPublic = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network"
		"10.0.0.0/8",      // private
		"100.64.0.0/10",   // carrier-grade NAT
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local (cloud metadata: 169.254.169.254)
		"172.16.0.0/12",   // private
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"192.168.0.0/16",  // private
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, broadcast
		"::/128",          // unspecified
		"::1/128",         // loopback
		"::ffff:0:0/96",   // IPv4-mapped (checked again unmapped)
		"64:ff9b::/96",    // NAT64: reaches IPv4 space
		"64:ff9b:1::/48",  // local NAT64
		"100::/64",        // discard
		"2001::/32",       // Teredo
		"2001:db8::/32",   // documentation
		"2002::/16",       // 6to4: embeds IPv4
		"fc00::/7",        // unique local (ULA)
		"fe80::/10",       // link-local
		"ff00::/8",        // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// Public reports whether ip is a public unicast address.
func Public(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

func (c check) allowedIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range c.nets {
		if p.Contains(ip) {
			return true
		}
	}
	return Public(ip)
}

// Resolver looks up a host's addresses (net.DefaultResolver fits).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Check validates a callback URL at submission: absolute https (http only
// with AllowHTTP), no credentials, not the gateway itself, and every
// address the host resolves to public or allowed. Errors wrap ErrRefused
// and say why, never what is listening there.
func (p Policy) Check(ctx context.Context, raw string, r Resolver) error {
	c, err := p.compile()
	if err != nil {
		return err
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%w: not an absolute URL", ErrRefused)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !c.http {
			return fmt.Errorf("%w: the callback must use https", ErrRefused)
		}
	default:
		return fmt.Errorf("%w: scheme %q (https only)", ErrRefused, u.Scheme)
	}
	if u.User != nil {
		return fmt.Errorf("%w: credentials in the URL", ErrRefused)
	}
	host := hostOnly(u.Host)
	if host == "" {
		return fmt.Errorf("%w: no host", ErrRefused)
	}
	if c.hosts[host] {
		return nil // listed by name: the operator vouches for it
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	if c.self[host] || c.self[net.JoinHostPort(host, port)] {
		return fmt.Errorf("%w: the callback points at the gateway itself", ErrRefused)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !c.allowedIP(ip) {
			return fmt.Errorf("%w: %s is not a public address", ErrRefused, host)
		}
		return nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return fmt.Errorf("%w: %s does not resolve to a public address", ErrRefused, host)
	}
	for _, ip := range ips {
		if !c.allowedIP(ip) {
			return fmt.Errorf("%w: %s does not resolve to a public address", ErrRefused, host)
		}
	}
	return nil
}

// Client returns an HTTP client for callbacks whose every connection is
// checked again at dial time, on the address actually dialled (a host that
// resolved to a public address at submission and to 10.0.0.1 now is
// refused), that follows no redirects and uses no proxy.
func (p Policy) Client(timeout time.Duration) (*http.Client, error) {
	c, err := p.compile()
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: timeout, Control: func(network, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrRefused, err)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || !c.allowedIP(ip) {
			return fmt.Errorf("%w: dial to a non-public address", ErrRefused)
		}
		return nil
	}}
	tr := &http.Transport{DialContext: d.DialContext, ForceAttemptHTTP2: true, TLSHandshakeTimeout: timeout,
		ResponseHeaderTimeout: timeout, MaxIdleConns: 16, IdleConnTimeout: 30 * time.Second}
	return &http.Client{Transport: tr, Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a redirect could lead anywhere: not followed
	}}, nil
}

// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256>".
const SignatureHeader = "X-Gateway-Signature"

// Sign returns the signature header value for body sent at t: the
// HMAC-SHA256, keyed by secret, of "<t>.<body>". The timestamp is signed,
// so a receiver that rejects old timestamps cannot be replayed to.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header on body, as a receiver should: the
// HMAC matches (constant-time) and the timestamp is within tolerance of now.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("callback signature: malformed header")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("callback signature: timestamp outside the tolerance (replayed?)")
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return errors.New("callback signature: no matching v1 signature")
}
