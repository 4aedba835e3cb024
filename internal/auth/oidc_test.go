package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/policy"
)

const testAudience = "api://foundry-gateway"

// researchScope is the scope of the fixture's first rule: every field set,
// so the tests see the whole scope reach the Principal.
var researchScope = policy.Scope{Models: []string{"gpt-4o"}, Regions: []string{"swedencentral"}, Class: policy.ClassBatch,
	MaxOutputTokens: 4096, OverCap: policy.Reject, MaxN: 2, Admin: true}

// fakeIdP is a local OIDC issuer: discovery document plus JWKS, with
// fetch counters and keys that can be rotated.
type fakeIdP struct {
	srv       *httptest.Server
	discovery atomic.Int64
	jwksHits  atomic.Int64
	down      atomic.Bool

	mu   sync.Mutex
	keys map[string]any // kid -> public key
}

func newFakeIdP(t *testing.T) *fakeIdP {
	t.Helper()
	f := &fakeIdP{keys: map[string]any{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		f.discovery.Add(1)
		if f.down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": f.srv.URL, "jwks_uri": f.srv.URL + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		f.jwksHits.Add(1)
		if f.down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		var set []map[string]string
		for kid, k := range f.keys {
			set = append(set, publicJWK(kid, k))
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": set})
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIdP) setKeys(keys map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = keys
}

func publicJWK(kid string, k any) map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := k.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		raw, _ := k.Bytes() // 0x04 || x || y
		return map[string]string{"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
	}
	panic("unknown key type")
}

// testKeys are generated once per test binary (RSA generation is slow under -race).
var testKeys = sync.OnceValue(func() (k struct {
	rsa1, rsa2 *rsa.PrivateKey
	ec1        *ecdsa.PrivateKey
}) {
	var err error
	if k.rsa1, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.ec1, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	return k
})

func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testClock is an injected clock the tests move by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type oidcFixture struct {
	idp   *fakeIdP
	clock *testClock
	o     *OIDC
	logs  *syncBuffer
	other string // a configured issuer whose IdP is unreachable
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newOIDCFixture(t *testing.T) *oidcFixture {
	t.Helper()
	k := testKeys()
	idp := newFakeIdP(t)
	idp.setKeys(map[string]any{"rsa1": &k.rsa1.PublicKey, "ec1": &k.ec1.PublicKey})
	clock := &testClock{now: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
	logs := &syncBuffer{}
	cfg := config.IdentityConfig{
		Issuers: []config.IssuerConfig{
			{Issuer: idp.srv.URL, Audience: testAudience, Audiences: []string{"extra-aud"}},
			{Issuer: deadIssuer(t), Audience: testAudience},
		},
		Rules: []config.IdentityRule{
			{Issuer: idp.srv.URL, Claims: map[string]string{"roles": "Gateway.Invoke", "tid": "tenant-1"},
				Team: "research", AppFromClaim: "azp", Scope: researchScope},
			{Claims: map[string]string{"groups": "g-finance"}, Team: "finance", App: "reports"},
			{Claims: map[string]string{"ver": "2", "email_verified": "true"}, Team: "typed", App: "scalars"},
		},
		ClockSkew:      config.Duration(60 * time.Second),
		JWKSRefreshMin: config.Duration(30 * time.Second),
	}
	other := cfg.Issuers[1].Issuer
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &oidcFixture{idp: idp, clock: clock, o: NewOIDC(cfg, idp.srv.Client(), clock.Now, log), logs: logs, other: other}
}

// deadIssuer returns a loopback issuer URL where nothing listens.
func deadIssuer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/v2.0"
}

// claims returns valid claims for the fixture's issuer, changed by mod.
func (f *oidcFixture) claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	now := f.clock.Now()
	c := jwt.MapClaims{
		"iss": f.idp.srv.URL, "aud": testAudience, "sub": "sub-123", "azp": "notebook-app", "tid": "tenant-1",
		"roles": []string{"Gateway.Invoke", "Other"}, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func wantHTTPErr(t *testing.T, err error, status int, code string) {
	t.Helper()
	var he *httperr.Error
	if !errors.As(err, &he) {
		t.Fatalf("got %v, want *httperr.Error %d %s", err, status, code)
	}
	if he.Status != status || he.Code != code {
		t.Fatalf("got %d %s (%v), want %d %s", he.Status, he.Code, err, status, code)
	}
}

// noTokenLeak fails if any part of the token shows up in s.
func noTokenLeak(t *testing.T, s, token string) {
	t.Helper()
	for _, part := range append([]string{token}, strings.Split(token, ".")...) {
		if len(part) >= 16 && strings.Contains(s, part) {
			t.Fatalf("token material %.20q… found in %q", part, s)
		}
	}
}

func TestOIDCAuthenticate(t *testing.T) {
	f := newOIDCFixture(t)
	k := testKeys()
	rs := jwt.SigningMethodRS256
	es := jwt.SigningMethodES256
	valid := sign(t, rs, k.rsa1, "rsa1", f.claims(nil))
	parts := strings.Split(valid, ".")
	tamperedPayload, _ := json.Marshal(f.claims(func(c jwt.MapClaims) { c["azp"] = "someone-else" }))
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.rsa1.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hdrNone := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"rsa1"}`))

	tests := []struct {
		name       string
		token      string
		want       Principal
		wantStatus int
		wantCode   string
	}{
		{name: "valid RS256 mapped with appFromClaim", token: valid,
			want: Principal{KeyID: "jwt:" + mustHost(f.idp.srv.URL) + ":sub-123", Team: "research", App: "notebook-app", Scope: researchScope}},
		{name: "valid ES256 mapped by group", token: sign(t, es, k.ec1, "ec1", f.claims(func(c jwt.MapClaims) {
			c["groups"] = []string{"g-other", "g-finance"}
			delete(c, "roles")
		})), want: Principal{KeyID: "jwt:" + mustHost(f.idp.srv.URL) + ":sub-123", Team: "finance", App: "reports"}},
		{name: "oid when no sub", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { delete(c, "sub"); c["oid"] = "oid-9" })),
			want: Principal{KeyID: "jwt:" + mustHost(f.idp.srv.URL) + ":oid-9", Team: "research", App: "notebook-app", Scope: researchScope}},
		{name: "subject unsafe as a table key is hashed", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["sub"] = "a/b#c" })),
			want: Principal{KeyID: "jwt:" + mustHost(f.idp.srv.URL) + ":sha256-" + hash("a/b#c"), Team: "research", App: "notebook-app", Scope: researchScope}},
		{name: "second audience accepted", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["aud"] = []string{"x", "extra-aud"} })),
			want: Principal{KeyID: "jwt:" + mustHost(f.idp.srv.URL) + ":sub-123", Team: "research", App: "notebook-app", Scope: researchScope}},
		{name: "number and bool claims", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["roles"] = []string{}; c["ver"] = 2; c["email_verified"] = true })),
			want: Principal{KeyID: "jwt:" + mustHost(f.idp.srv.URL) + ":sub-123", Team: "typed", App: "scalars"}},
		{name: "expired within skew", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["exp"] = f.clock.Now().Add(-30 * time.Second).Unix() })),
			want: Principal{KeyID: "jwt:" + mustHost(f.idp.srv.URL) + ":sub-123", Team: "research", App: "notebook-app", Scope: researchScope}},
		{name: "nbf within skew", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["nbf"] = f.clock.Now().Add(30 * time.Second).Unix() })),
			want: Principal{KeyID: "jwt:" + mustHost(f.idp.srv.URL) + ":sub-123", Team: "research", App: "notebook-app", Scope: researchScope}},

		{name: "wrong audience", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["aud"] = "api://someone-else" })), wantStatus: 401, wantCode: "invalid_token"},
		{name: "no audience", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { delete(c, "aud") })), wantStatus: 401, wantCode: "invalid_token"},
		{name: "untrusted issuer", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" })), wantStatus: 401, wantCode: "invalid_token"},
		{name: "other trusted issuer with this issuer's key", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["iss"] = f.other })), wantStatus: 503, wantCode: "identity_provider_unavailable"},
		{name: "expired", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["exp"] = f.clock.Now().Add(-2 * time.Minute).Unix() })), wantStatus: 401, wantCode: "invalid_token"},
		{name: "no exp", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { delete(c, "exp") })), wantStatus: 401, wantCode: "invalid_token"},
		{name: "not yet valid", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["nbf"] = f.clock.Now().Add(2 * time.Minute).Unix() })), wantStatus: 401, wantCode: "invalid_token"},
		{name: "tampered payload", token: parts[0] + "." + base64.RawURLEncoding.EncodeToString(tamperedPayload) + "." + parts[2], wantStatus: 401, wantCode: "invalid_token"},
		{name: "tampered signature", token: parts[0] + "." + parts[1] + "." + flipFirst(parts[2]), wantStatus: 401, wantCode: "invalid_token"},
		{name: "alg none", token: hdrNone + "." + parts[1] + ".", wantStatus: 401, wantCode: "invalid_token"},
		{name: "HS256 with the public key as secret", token: sign(t, jwt.SigningMethodHS256, pubPEM, "rsa1", f.claims(nil)), wantStatus: 401, wantCode: "invalid_token"},
		{name: "HS256 with the DER public key as secret", token: sign(t, jwt.SigningMethodHS256, pubDER, "rsa1", f.claims(nil)), wantStatus: 401, wantCode: "invalid_token"},
		{name: "RS256 header on an EC kid", token: sign(t, rs, k.rsa1, "ec1", f.claims(nil)), wantStatus: 401, wantCode: "invalid_token"},
		{name: "ES256 header on an RSA kid", token: sign(t, es, k.ec1, "rsa1", f.claims(nil)), wantStatus: 401, wantCode: "invalid_token"},
		{name: "RS512 refused", token: sign(t, jwt.SigningMethodRS512, k.rsa1, "rsa1", f.claims(nil)), wantStatus: 401, wantCode: "invalid_token"},
		{name: "unknown kid", token: sign(t, rs, k.rsa1, "nope", f.claims(nil)), wantStatus: 401, wantCode: "invalid_token"},
		{name: "no kid", token: sign(t, rs, k.rsa1, "", f.claims(nil)), wantStatus: 401, wantCode: "invalid_token"},
		{name: "no subject", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { delete(c, "sub") })), wantStatus: 401, wantCode: "invalid_token"},
		{name: "garbage", token: "eyJhbGciOi.not-base64!.x", wantStatus: 401, wantCode: "invalid_token"},
		{name: "unmapped: role missing", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["roles"] = []string{"Other"} })), wantStatus: 403, wantCode: "unmapped_identity"},
		{name: "unmapped: tenant differs", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["tid"] = "tenant-2" })), wantStatus: 403, wantCode: "unmapped_identity"},
		{name: "unmapped: appFromClaim missing", token: sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { delete(c, "azp") })), wantStatus: 403, wantCode: "unmapped_identity"},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.o.Authenticate(ctx, tt.token)
			if tt.wantStatus != 0 {
				wantHTTPErr(t, err, tt.wantStatus, tt.wantCode)
				noTokenLeak(t, err.Error(), tt.token)
				return
			}
			if err != nil {
				t.Fatalf("got %v, want nil", err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	for _, tt := range tests {
		noTokenLeak(t, f.logs.String(), tt.token)
	}
	// One discovery, one JWKS fetch for all of the above: the unknown kid
	// came within JWKSRefreshMin of the first fetch.
	if got, want := f.idp.jwksHits.Load(), int64(1); got != want {
		t.Errorf("jwks fetches: got %v, want %v", got, want)
	}
}

func mustHost(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		panic(err)
	}
	return p.Host
}

func flipFirst(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

func TestOIDCKeyRotation(t *testing.T) {
	f := newOIDCFixture(t)
	k := testKeys()
	ctx := context.Background()
	if _, err := f.o.Authenticate(ctx, sign(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", f.claims(nil))); err != nil {
		t.Fatalf("before rotation: got %v, want nil", err)
	}
	// The issuer rotates: rsa2 replaces rsa1.
	f.idp.setKeys(map[string]any{"rsa2": &k.rsa2.PublicKey})
	steps := []struct {
		name      string
		advance   time.Duration
		kid       string
		key       *rsa.PrivateKey
		wantErr   bool
		wantFetch int64
	}{
		// rsa1 stays cached until the next fetch.
		{"old key still cached", 0, "rsa1", k.rsa1, false, 1},
		// Within JWKSRefreshMin the new kid is refused without a fetch.
		{"new kid too soon", 10 * time.Second, "rsa2", k.rsa2, true, 1},
		{"new kid after the interval", 25 * time.Second, "rsa2", k.rsa2, false, 2},
		{"old key gone after refetch", 0, "rsa1", k.rsa1, true, 2},
		{"new key cached", time.Minute, "rsa2", k.rsa2, false, 2},
	}
	for _, s := range steps {
		f.clock.Add(s.advance)
		_, err := f.o.Authenticate(ctx, sign(t, jwt.SigningMethodRS256, s.key, s.kid, f.claims(nil)))
		if (err != nil) != s.wantErr {
			t.Fatalf("%s: got err %v, want error %v", s.name, err, s.wantErr)
		}
		if err != nil {
			wantHTTPErr(t, err, 401, "invalid_token")
		}
		if got := f.idp.jwksHits.Load(); got != s.wantFetch {
			t.Fatalf("%s: jwks fetches: got %v, want %v", s.name, got, s.wantFetch)
		}
	}
	// Discovery is cached with the keys; only the JWKS is refetched.
	if got, want := f.idp.discovery.Load(), int64(1); got != want {
		t.Errorf("discovery fetches: got %v, want %v", got, want)
	}
}

func TestOIDCBoundedRefresh(t *testing.T) {
	f := newOIDCFixture(t)
	k := testKeys()
	ctx := context.Background()
	flood := func(n int) (errs int) {
		var wg sync.WaitGroup
		var bad atomic.Int64
		for i := range n {
			tok := sign(t, jwt.SigningMethodRS256, k.rsa1, fmt.Sprintf("bogus-%d", i), f.claims(nil))
			wg.Go(func() {
				if _, err := f.o.Authenticate(ctx, tok); err != nil {
					bad.Add(1)
				}
			})
		}
		wg.Wait()
		return int(bad.Load())
	}
	rounds := []struct {
		name      string
		advance   time.Duration
		wantFetch int64
	}{
		{"first flood: one fetch shared by all", 0, 1},
		{"same interval: no fetch", 29 * time.Second, 1},
		{"next interval: one more", 2 * time.Second, 2},
		{"and again no more", 5 * time.Second, 2},
	}
	for _, r := range rounds {
		f.clock.Add(r.advance)
		if got, want := flood(50), 50; got != want {
			t.Fatalf("%s: refused: got %v, want %v", r.name, got, want)
		}
		if got := f.idp.jwksHits.Load(); got != r.wantFetch {
			t.Fatalf("%s: jwks fetches: got %v, want %v", r.name, got, r.wantFetch)
		}
	}
}

func TestOIDCConcurrentFirstUseSharesOneFetch(t *testing.T) {
	f := newOIDCFixture(t)
	k := testKeys()
	tok := sign(t, jwt.SigningMethodES256, k.ec1, "ec1", f.claims(nil))
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 30 {
		wg.Go(func() {
			if _, err := f.o.Authenticate(context.Background(), tok); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if got, want := failed.Load(), int64(0); got != want {
		t.Errorf("failed: got %v, want %v", got, want)
	}
	if got, want := f.idp.jwksHits.Load(), int64(1); got != want {
		t.Errorf("jwks fetches: got %v, want %v", got, want)
	}
}

func TestOIDCIdPDown(t *testing.T) {
	f := newOIDCFixture(t)
	k := testKeys()
	ctx := context.Background()
	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["exp"] = f.clock.Now().Add(24 * time.Hour).Unix() }))
	f.idp.down.Store(true)
	_, err := f.o.Authenticate(ctx, tok)
	wantHTTPErr(t, err, 503, "identity_provider_unavailable")
	noTokenLeak(t, err.Error(), tok)
	f.idp.down.Store(false)
	// Within the interval the IdP is not asked again.
	_, err = f.o.Authenticate(ctx, tok)
	wantHTTPErr(t, err, 401, "invalid_token")
	f.clock.Add(31 * time.Second)
	if _, err := f.o.Authenticate(ctx, tok); err != nil {
		t.Fatalf("after recovery: got %v, want nil", err)
	}
	if got, want := f.idp.discovery.Load(), int64(2); got != want {
		t.Errorf("discovery fetches: got %v, want %v", got, want)
	}
	noTokenLeak(t, f.logs.String(), tok)
}

func TestLooksLikeJWT(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", true},
		{"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", true},
		{"fgw-0123456789ab.secretsecretsecret", false},
		{"eyJ.only-one-dot", false},
		{"abc.def.ghi", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := LooksLikeJWT(tt.in); got != tt.want {
			t.Errorf("LooksLikeJWT(%q): got %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestAuthenticatorWithOIDC goes through Authenticator.Authenticate with
// request headers: JWTs go to OIDC, API keys still work beside them.
func TestAuthenticatorWithOIDC(t *testing.T) {
	f := newOIDCFixture(t)
	k := testKeys()
	ctx := context.Background()
	keys := newKeys(t, f.clock.Now)
	key, secret, err := keys.Create(ctx, Spec{Team: "research", App: "notebook"})
	if err != nil {
		t.Fatal(err)
	}
	withOIDC := NewAuthenticator(keys, time.Minute).WithOIDC(f.o)
	keysOnly := NewAuthenticator(keys, time.Minute)
	jwtTok := sign(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", f.claims(nil))
	badTok := sign(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["aud"] = "nope" }))
	jwtPrincipal := Principal{KeyID: "jwt:" + mustHost(f.idp.srv.URL) + ":sub-123", Team: "research", App: "notebook-app", Scope: researchScope}
	keyPrincipal := Principal{KeyID: key.ID, CredentialID: key.ID, Team: "research", App: "notebook"}

	tests := []struct {
		name     string
		a        *Authenticator
		h        http.Header
		want     Principal
		wantCode string
	}{
		{"bearer JWT", withOIDC, hdr("Authorization", "Bearer "+jwtTok), jwtPrincipal, ""},
		{"bearer API key beside OIDC", withOIDC, hdr("Authorization", "Bearer "+secret), keyPrincipal, ""},
		{"api-key header beside OIDC", withOIDC, hdr("Api-Key", secret), keyPrincipal, ""},
		{"bearer invalid JWT", withOIDC, hdr("Authorization", "Bearer "+badTok), Principal{}, "invalid_token"},
		{"bearer bad API key", withOIDC, hdr("Authorization", "Bearer fgw-000000000000.nope"), Principal{}, "invalid_api_key"},
		{"JWT without OIDC configured is an unknown API key", keysOnly, hdr("Authorization", "Bearer "+jwtTok), Principal{}, "invalid_api_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.a.Authenticate(ctx, tt.h)
			if tt.wantCode != "" {
				wantHTTPErr(t, err, 401, tt.wantCode)
				noTokenLeak(t, err.Error(), jwtTok)
				noTokenLeak(t, err.Error(), badTok)
				return
			}
			if err != nil {
				t.Fatalf("got %v, want nil", err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestOIDCRefusalLogs (issue #16 item 8): every refused token logs the
// failed check and the issuer and subject it claims, never the token.
func TestOIDCRefusalLogs(t *testing.T) {
	k := testKeys()
	rs := jwt.SigningMethodRS256
	tests := []struct {
		name   string
		token  func(f *oidcFixture) string
		reason string
	}{
		{"expired", func(f *oidcFixture) string {
			return sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["exp"] = f.clock.Now().Add(-2 * time.Minute).Unix() }))
		}, "expired"},
		{"audience", func(f *oidcFixture) string {
			return sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["aud"] = "api://someone-else" }))
		}, "audience"},
		{"issuer", func(f *oidcFixture) string {
			return sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" }))
		}, "issuer"},
		{"signature", func(f *oidcFixture) string {
			p := strings.Split(sign(t, rs, k.rsa1, "rsa1", f.claims(nil)), ".")
			return p[0] + "." + p[1] + "." + flipFirst(p[2])
		}, "signature"},
		{"unknown kid", func(f *oidcFixture) string { return sign(t, rs, k.rsa1, "nope", f.claims(nil)) }, "unknown_kid"},
		{"unmapped", func(f *oidcFixture) string {
			return sign(t, rs, k.rsa1, "rsa1", f.claims(func(c jwt.MapClaims) { c["roles"] = []string{"Other"} }))
		}, "unmapped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newOIDCFixture(t)
			tok := tt.token(f)
			if _, err := f.o.Authenticate(context.Background(), tok); err == nil {
				t.Fatal("token accepted")
			}
			logs := f.logs.String()
			if !strings.Contains(logs, "token refused") || !strings.Contains(logs, "reason="+tt.reason) ||
				!strings.Contains(logs, "subject=sub-123") || !strings.Contains(logs, "issuer=") {
				t.Errorf("logs %q: want a 'token refused' line with reason=%s, the issuer and subject", logs, tt.reason)
			}
			noTokenLeak(t, logs, tok)
		})
	}
}
