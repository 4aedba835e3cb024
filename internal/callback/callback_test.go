package callback

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// fakeResolver answers fixed addresses per host.
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range f[host] {
		out = append(out, netip.MustParseAddr(s))
	}
	if len(out) == 0 {
		return nil, errors.New("no such host")
	}
	return out, nil
}

// TestCheck (issue #16 item 2): loopback, private, link-local, CGNAT, ULA
// and the gateway itself are refused at submission unless allowed; https
// only outside dev mode.
func TestCheck(t *testing.T) {
	r := fakeResolver{"hooks.example.com": {"93.184.216.34"}, "rebind.example.com": {"93.184.216.34", "10.0.0.5"},
		"internal.corp": {"10.1.2.3"}, "gw.example.net": {"20.1.2.3"}}
	base := Policy{Self: []string{"gw.example.net", "93.184.216.34:8443"}}
	tests := []struct {
		name string
		p    Policy
		url  string
		ok   bool
	}{
		{"public https", base, "https://hooks.example.com/done", true},
		{"public ip", base, "https://93.184.216.34/x", true},
		{"http refused", base, "http://hooks.example.com/done", false},
		{"loopback", base, "https://127.0.0.1:8080/drain", false},
		{"localhost name", base, "https://localhost/x", false},
		{"metadata", base, "https://169.254.169.254/metadata/instance", false},
		{"private", base, "https://10.0.0.1/x", false},
		{"private 172", base, "https://172.20.1.1/x", false},
		{"cgnat", base, "https://100.64.1.1/x", false},
		{"ipv6 loopback", base, "https://[::1]/x", false},
		{"ipv6 ula", base, "https://[fd00::1]/x", false},
		{"ipv6 link-local", base, "https://[fe80::1]/x", false},
		{"ipv4-mapped loopback", base, "https://[::ffff:127.0.0.1]/x", false},
		{"nat64 metadata", base, "https://[64:ff9b::a9fe:a9fe]/x", false},
		{"unspecified", base, "https://0.0.0.0/x", false},
		{"one private address among many", base, "https://rebind.example.com/x", false},
		{"name resolving private", base, "https://internal.corp/x", false},
		{"the gateway itself", base, "https://gw.example.net/drain", false},
		{"the gateway by its request host:port", base, "https://93.184.216.34:8443/rollup", false},
		{"another port of that host", base, "https://93.184.216.34:9443/x", true},
		{"credentials", base, "https://u:p@hooks.example.com/", false},
		{"not absolute", base, "/jobs/1", false},
		{"ftp", base, "ftp://hooks.example.com/", false},
		{"allowed network", Policy{Allow: []string{"10.0.0.0/8"}}, "https://internal.corp/x", true},
		{"allowed host", Policy{Allow: []string{"internal.corp"}}, "https://internal.corp/x", true},
		{"dev mode loopback http", Policy{Allow: []string{"127.0.0.1/32"}, AllowHTTP: true}, "http://127.0.0.1:9000/cb", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Check(context.Background(), tt.url, r)
			if tt.ok != (err == nil) {
				t.Fatalf("Check(%q) = %v, want ok=%v", tt.url, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrRefused) {
				t.Errorf("error %v does not wrap ErrRefused", err)
			}
		})
	}
}

// TestClientRefusesAtDialTime: the address actually dialled is checked, so
// a name that re-resolves to a private address (DNS rebinding) is refused.
func TestClientRefusesAtDialTime(t *testing.T) {
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer srv.Close()
	c, err := Policy{AllowHTTP: true}.Client(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err == nil || !errors.Is(err, ErrRefused) || hits != 0 {
		t.Fatalf("post to loopback: err %v, hits %d; want refused at dial", err, hits)
	}
	allowed, _ := Policy{AllowHTTP: true, Allow: []string{"127.0.0.1/32"}}.Client(2 * time.Second)
	resp, err := allowed.Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil || hits != 1 {
		t.Fatalf("allowed post: %v, hits %d", err, hits)
	}
	resp.Body.Close()
}

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"job_1","status":"succeeded"}`)
	h := Sign("s3cret", now, body)
	if !strings.HasPrefix(h, "t=1800000000,v1=") {
		t.Fatalf("header %q", h)
	}
	if err := Verify("s3cret", h, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Errorf("valid: %v", err)
	}
	for name, err := range map[string]error{
		"replayed later":  Verify("s3cret", h, body, now.Add(time.Hour), 5*time.Minute),
		"other body":      Verify("s3cret", h, []byte(`{"id":"job_2"}`), now, 5*time.Minute),
		"other secret":    Verify("other", h, body, now, 5*time.Minute),
		"timestamp moved": Verify("s3cret", strings.Replace(h, "t=1800000000", "t=1800003600", 1), body, now.Add(time.Hour), 5*time.Minute),
		"malformed":       Verify("s3cret", "sha256=abc", body, now, 5*time.Minute),
	} {
		if err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// FuzzCheck: the URL check never panics, and nothing it accepts (with no
// allow-list) names a non-public IP literal or a non-https scheme.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"https://hooks.example.com/x", "http://127.0.0.1/", "https://[::ffff:10.0.0.1]/", "https://0x7f.1/", "https://2130706433/"} {
		f.Add(s)
	}
	r := fakeResolver{"hooks.example.com": {"93.184.216.34"}}
	f.Fuzz(func(t *testing.T, raw string) {
		err := Policy{}.Check(context.Background(), raw, r)
		if err != nil {
			return
		}
		if !strings.HasPrefix(strings.ToLower(raw), "https:") {
			t.Fatalf("accepted non-https %q", raw)
		}
		host := hostOnly(mustHost(raw))
		if ip, perr := netip.ParseAddr(host); perr == nil && !Public(ip) {
			t.Fatalf("accepted non-public %q", raw)
		}
	})
}

func mustHost(raw string) string {
	i := strings.Index(raw, "://")
	rest := raw[i+3:]
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		rest = rest[:j]
	}
	if k := strings.LastIndex(rest, "@"); k >= 0 {
		rest = rest[k+1:]
	}
	return rest
}
