package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/policy"
)

// JWT errors, for logs and errors.Is; clients only see the httperr message.
var (
	ErrBadToken       = errors.New("auth: invalid token")
	ErrUnmapped       = errors.New("auth: no identity rule matches the token")
	ErrIdPUnavailable = errors.New("auth: identity provider unavailable")
)

// allowedAlgs are the only signature algorithms accepted. "none" and HS*
// are refused before any key is looked up; the key type must match too.
var allowedAlgs = []string{"RS256", "ES256"}

const (
	// maxDocBytes caps discovery documents and JWKS bodies.
	maxDocBytes = 1 << 20
	// fetchTimeout bounds one discovery + JWKS fetch.
	fetchTimeout = 10 * time.Second
	// maxTokenBytes refuses absurd tokens before parsing.
	maxTokenBytes = 16 << 10
)

// OIDC verifies JWT bearer tokens from configured OIDC issuers and maps
// them to a Principal with the configured rules. Signing keys come from
// each issuer's JWKS (found through OIDC discovery), are cached, and are
// refetched on an unknown kid at most once per JWKSRefreshMin per issuer.
// Safe for concurrent use.
type OIDC struct {
	client     *http.Client
	now        func() time.Time
	log        *slog.Logger
	skew       time.Duration
	refreshMin time.Duration
	rules      []config.IdentityRule
	issuers    map[string]*issuer // by exact iss
}

// issuer is one trusted issuer and its cached signing keys.
type issuer struct {
	iss       string
	host      string
	audiences []string

	mu       sync.Mutex
	jwksURI  string         // from discovery; empty until found
	keys     map[string]jwk // by kid
	lastTry  time.Time      // last fetch attempt, success or not
	inflight chan struct{}  // closed when the running fetch ends
}

// jwk is a parsed signing key and the one alg it may verify.
type jwk struct {
	alg string
	key any // *rsa.PublicKey or *ecdsa.PublicKey
}

// NewOIDC builds the verifier from validated config. client fetches
// discovery documents and JWKS; now defaults to time.Now; log may be nil.
// It starts no goroutines and makes no requests: keys are fetched on the
// first token of each issuer.
func NewOIDC(c config.IdentityConfig, client *http.Client, now func() time.Time, log *slog.Logger) *OIDC {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := &OIDC{client: client, now: now, log: log, skew: c.ClockSkew.D(), refreshMin: c.JWKSRefreshMin.D(),
		rules: c.Rules, issuers: map[string]*issuer{}}
	for _, ic := range c.Issuers {
		host := ic.Issuer
		if u, err := url.Parse(ic.Issuer); err == nil && u.Host != "" {
			host = u.Host
		}
		o.issuers[ic.Issuer] = &issuer{iss: ic.Issuer, host: host, audiences: ic.AllAudiences(), keys: map[string]jwk{}}
	}
	return o
}

// LooksLikeJWT reports whether a credential has the shape of a compact JWS
// (three dot-separated parts, a JSON header), as opposed to an API key.
func LooksLikeJWT(s string) bool {
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
}

// Authenticate verifies token and maps it to a Principal. Errors are
// *httperr.Error: 401 invalid_token for a bad token, 403
// unmapped_identity for a valid token no rule maps, 503 when the issuer's
// keys cannot be fetched. Neither the message nor the logged cause ever
// contains the token.
func (o *OIDC) Authenticate(ctx context.Context, token string) (Principal, error) {
	claims, is, err := o.verify(ctx, token)
	if err != nil {
		o.refused(ctx, token, err)
		if errors.Is(err, ErrIdPUnavailable) {
			return Principal{}, httperr.Wrap(err, http.StatusServiceUnavailable, "identity_provider_unavailable",
				"The gateway cannot fetch the token issuer's signing keys right now. Retry shortly.")
		}
		return Principal{}, httperr.Wrap(err, http.StatusUnauthorized, "invalid_token",
			"Access denied due to an invalid bearer token: check its issuer, audience, signature and expiry.")
	}
	subject := stringClaim(claims, "sub")
	if subject == "" {
		subject = stringClaim(claims, "oid")
	}
	if subject == "" {
		o.refused(ctx, token, fmt.Errorf("%w: no sub or oid claim", ErrBadToken))
		return Principal{}, httperr.Wrap(fmt.Errorf("%w: no sub or oid claim", ErrBadToken), http.StatusUnauthorized,
			"invalid_token", "Access denied: the bearer token has no subject.")
	}
	for _, r := range o.rules {
		if r.Issuer != "" && r.Issuer != is.iss {
			continue
		}
		if !matchClaims(claims, r.Claims) {
			continue
		}
		app := r.App
		if r.AppFromClaim != "" {
			if app = stringClaim(claims, r.AppFromClaim); !policy.ValidName(app) {
				continue
			}
		}
		return Principal{KeyID: "jwt:" + is.host + ":" + keySafe(subject), Team: r.Team, App: app, Scope: r.Scope}, nil
	}
	o.refused(ctx, token, ErrUnmapped)
	return Principal{}, httperr.Wrap(fmt.Errorf("%w (iss %q, sub %q)", ErrUnmapped, is.iss, subject), http.StatusForbidden,
		"unmapped_identity", "The bearer token is valid but its identity is not mapped to a team and app on this gateway. Ask the gateway operators to add an identity rule.")
}

// refused logs why a token was refused, with the issuer and subject it
// claims (unverified: read without checking the signature, and labelled
// so), never the token itself.
func (o *OIDC) refused(ctx context.Context, token string, err error) {
	var iss, sub string
	if c, _, perr := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{}); perr == nil {
		if mc, ok := c.Claims.(jwt.MapClaims); ok {
			iss, sub = truncate(stringClaim(mc, "iss")), truncate(stringClaim(mc, "sub"))
			if sub == "" {
				sub = truncate(stringClaim(mc, "oid"))
			}
		}
	}
	o.log.LogAttrs(ctx, slog.LevelWarn, "token refused", slog.String("reason", refusalReason(err)),
		slog.String("issuer", iss), slog.String("subject", sub), slog.String("error", err.Error()))
}

// refusalReason names the failed check: expired, not_yet_valid, audience,
// issuer, signature, unknown_kid, malformed, no_subject, unmapped, idp_unavailable.
func refusalReason(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, ErrIdPUnavailable):
		return "idp_unavailable"
	case errors.Is(err, ErrUnmapped):
		return "unmapped"
	case errors.Is(err, jwt.ErrTokenExpired) || strings.Contains(msg, "token is expired"):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet) || strings.Contains(msg, "token is not valid yet") || strings.Contains(msg, "used before issued"):
		return "not_yet_valid"
	case strings.Contains(msg, "unknown key id"):
		return "unknown_kid"
	case strings.Contains(msg, "untrusted issuer"):
		return "issuer"
	case strings.Contains(msg, "audience"):
		return "audience"
	case strings.Contains(msg, "signature is invalid") || strings.Contains(msg, "signing method") || strings.Contains(msg, "does not fit key"):
		return "signature"
	case strings.Contains(msg, "no sub or oid"):
		return "no_subject"
	case strings.Contains(msg, "exp claim is required") || strings.Contains(msg, "token is missing"):
		return "expired" // no expiry: refused like an expired token
	default:
		return "malformed"
	}
}

// verify checks shape, alg, signature, issuer, audience, exp and nbf.
func (o *OIDC) verify(ctx context.Context, token string) (jwt.MapClaims, *issuer, error) {
	if len(token) > maxTokenBytes || !LooksLikeJWT(token) {
		return nil, nil, fmt.Errorf("%w: not a compact JWS", ErrBadToken)
	}
	var is *issuer
	var keyErr error
	p := jwt.NewParser(jwt.WithValidMethods(allowedAlgs), jwt.WithLeeway(o.skew), jwt.WithTimeFunc(o.now),
		jwt.WithExpirationRequired())
	claims := jwt.MapClaims{}
	_, err := p.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		// Claims are not yet verified here; iss only selects the keys,
		// and a forged iss cannot be signed by that issuer's keys.
		iss, _ := t.Claims.GetIssuer()
		is = o.issuers[iss]
		if is == nil {
			return nil, fmt.Errorf("untrusted issuer %q", truncate(iss))
		}
		kid, _ := t.Header["kid"].(string)
		alg := t.Method.Alg()
		k, err := o.key(ctx, is, kid)
		if err != nil {
			keyErr = err
			return nil, err
		}
		if k.alg != alg {
			return nil, fmt.Errorf("alg %s does not fit key %q (%s)", alg, truncate(kid), k.alg)
		}
		return k.key, nil
	})
	if keyErr != nil && errors.Is(keyErr, ErrIdPUnavailable) {
		return nil, nil, keyErr
	}
	if err != nil {
		// jwt errors describe the failing check, never the token text.
		return nil, nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	aud, _ := claims.GetAudience()
	if !anyIn(aud, is.audiences) {
		return nil, nil, fmt.Errorf("%w: audience %q not accepted for issuer %q", ErrBadToken, truncate(strings.Join(aud, ",")), is.iss)
	}
	return claims, is, nil
}

// key returns the signing key kid of is, fetching the JWKS when the kid
// is unknown and the last fetch is at least refreshMin old. Concurrent
// callers share one fetch.
func (o *OIDC) key(ctx context.Context, is *issuer, kid string) (jwk, error) {
	is.mu.Lock()
	if k, ok := is.keys[kid]; ok {
		is.mu.Unlock()
		return k, nil
	}
	if ch := is.inflight; ch != nil {
		is.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return jwk{}, ctx.Err()
		}
		is.mu.Lock()
		k, ok := is.keys[kid]
		is.mu.Unlock()
		if !ok {
			return jwk{}, fmt.Errorf("unknown key id %q", truncate(kid))
		}
		return k, nil
	}
	now := o.now()
	if !is.lastTry.IsZero() && now.Sub(is.lastTry) < o.refreshMin {
		is.mu.Unlock()
		return jwk{}, fmt.Errorf("unknown key id %q (JWKS refreshed less than %v ago)", truncate(kid), o.refreshMin)
	}
	is.lastTry = now
	ch := make(chan struct{})
	is.inflight = ch
	uri := is.jwksURI
	is.mu.Unlock()

	// The fetch serves every waiter, so one client going away must not
	// cancel it; it is bounded by fetchTimeout instead.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	keys, uri, err := o.fetch(fctx, is, uri)
	cancel()

	is.mu.Lock()
	defer is.mu.Unlock()
	is.inflight = nil
	close(ch)
	if err != nil {
		is.jwksURI = "" // rediscover next time
		o.log.Warn("oidc: fetching signing keys", "issuer", is.iss, "error", err)
		return jwk{}, fmt.Errorf("%w: %v", ErrIdPUnavailable, err)
	}
	is.jwksURI = uri
	is.keys = keys
	o.log.Info("oidc: signing keys fetched", "issuer", is.iss, "keys", len(keys))
	k, ok := keys[kid]
	if !ok {
		return jwk{}, fmt.Errorf("unknown key id %q", truncate(kid))
	}
	return k, nil
}

// fetch finds the JWKS through discovery (unless uri is known) and parses it.
func (o *OIDC) fetch(ctx context.Context, is *issuer, uri string) (map[string]jwk, string, error) {
	if uri == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := o.getJSON(ctx, strings.TrimSuffix(is.iss, "/")+"/.well-known/openid-configuration", &doc); err != nil {
			return nil, "", fmt.Errorf("discovery: %w", err)
		}
		// OpenID Connect Discovery 1.0 §4.3: the issuer must match exactly.
		if doc.Issuer != is.iss {
			return nil, "", fmt.Errorf("discovery: document issuer %q differs from %q", truncate(doc.Issuer), is.iss)
		}
		u, err := url.Parse(doc.JWKSURI)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, "", fmt.Errorf("discovery: bad jwks_uri %q", truncate(doc.JWKSURI))
		}
		uri = doc.JWKSURI
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := o.getJSON(ctx, uri, &set); err != nil {
		return nil, "", fmt.Errorf("jwks: %w", err)
	}
	keys := map[string]jwk{}
	for _, raw := range set.Keys {
		kid, k, err := parseJWK(raw)
		if err != nil {
			o.log.Debug("oidc: skipping key", "issuer", is.iss, "kid", kid, "error", err)
			continue
		}
		keys[kid] = k
	}
	return keys, uri, nil
}

func (o *OIDC) getJSON(ctx context.Context, uri string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := o.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocBytes))
		return fmt.Errorf("GET %s: status %d", uri, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDocBytes)).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", uri, err)
	}
	return nil
}

// parseJWK reads an RSA (n, e; at least 2048 bits) or EC P-256 (x, y)
// signing key (RFC 7517, RFC 7518 §6). Keys for encryption, other curves
// and algs other than RS256/ES256 are refused.
func parseJWK(raw json.RawMessage) (string, jwk, error) {
	var j struct {
		Kty, Kid, Use, Alg, Crv, N, E, X, Y string
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return "", jwk{}, err
	}
	if j.Use != "" && j.Use != "sig" {
		return j.Kid, jwk{}, fmt.Errorf("use %q", j.Use)
	}
	b64 := base64.RawURLEncoding.DecodeString
	switch j.Kty {
	case "RSA":
		if j.Alg != "" && j.Alg != "RS256" {
			return j.Kid, jwk{}, fmt.Errorf("alg %q", j.Alg)
		}
		n, err1 := b64(j.N)
		e, err2 := b64(j.E)
		if err := errors.Join(err1, err2); err != nil {
			return j.Kid, jwk{}, err
		}
		ei := new(big.Int).SetBytes(e)
		nb := new(big.Int).SetBytes(n)
		if nb.BitLen() < 2048 || !ei.IsInt64() || ei.Int64() < 3 || ei.Int64() > 1<<31-1 {
			return j.Kid, jwk{}, errors.New("weak or malformed RSA key")
		}
		return j.Kid, jwk{alg: "RS256", key: &rsa.PublicKey{N: nb, E: int(ei.Int64())}}, nil
	case "EC":
		if j.Crv != "P-256" || (j.Alg != "" && j.Alg != "ES256") {
			return j.Kid, jwk{}, fmt.Errorf("crv %q alg %q", j.Crv, j.Alg)
		}
		x, err1 := b64(j.X)
		y, err2 := b64(j.Y)
		if err := errors.Join(err1, err2); err != nil {
			return j.Kid, jwk{}, err
		}
		if len(x) != 32 || len(y) != 32 {
			return j.Kid, jwk{}, errors.New("bad P-256 coordinates")
		}
		pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return j.Kid, jwk{}, err
		}
		return j.Kid, jwk{alg: "ES256", key: pk}, nil
	default:
		return j.Kid, jwk{}, fmt.Errorf("kty %q", j.Kty)
	}
}

// matchClaims reports whether every wanted claim matches: a scalar claim
// equals the value, an array claim contains it.
func matchClaims(claims jwt.MapClaims, want map[string]string) bool {
	for name, v := range want {
		switch c := claims[name].(type) {
		case string:
			if c != v {
				return false
			}
		case []any:
			found := false
			for _, e := range c {
				if s, ok := e.(string); ok && s == v {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		case nil:
			return false
		default:
			if fmt.Sprint(c) != v { // numbers and booleans
				return false
			}
		}
	}
	return true
}

func stringClaim(claims jwt.MapClaims, name string) string {
	s, _ := claims[name].(string)
	return s
}

func anyIn(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if h == w {
				return true
			}
		}
	}
	return false
}

// keySafe returns sub unchanged when it is safe as a table key (jobs are
// partitioned by KeyID; Azure Tables refuse '/', '\\', '#', '?' and control
// characters), else a SHA-256 digest of it, so distinct subjects never
// collide.
func keySafe(sub string) string {
	ok := len(sub) <= 200
	for _, c := range sub {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.@|:+=~", c)) {
			ok = false
			break
		}
	}
	if ok {
		return sub
	}
	return "sha256-" + hash(sub)
}

// truncate shortens attacker-controlled values before they reach logs.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
