package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/policy"
)

// Principal is an authenticated caller.
type Principal struct {
	// KeyID is the caller id quotas, jobs and usage count by: the key's
	// [Key.Subject] (stable across rotations), or
	// "jwt:<issuer host>:<subject>" for a token.
	KeyID string
	// CredentialID is the id of the API key presented ("" for a token).
	CredentialID string
	Team         string
	App          string
	// Scope is what the caller may do.
	Scope policy.Scope
}

// Authenticator checks the credential on a request. Safe for concurrent use.
type Authenticator struct {
	keys *Keys
	ttl  time.Duration
	now  func() time.Time

	// oidc, when set, verifies bearer credentials shaped like a JWT.
	oidc *OIDC

	mu    sync.Mutex
	cache map[string]cached // by full secret hash
}

type cached struct {
	p         Principal
	err       error
	expires   time.Time
	rotatedTo string // of an expired key that was rotated
}

// maxCache bounds the cache; past it, expired entries are swept and, if
// still full, the cache is cleared (keys are few; this never happens in
// practice but memory stays bounded under a flood of random keys).
const maxCache = 10000

// negativeTTL caps how long an unknown key stays refused from cache, so a
// key created on another instance works within seconds.
const negativeTTL = 2 * time.Second

// NewAuthenticator caches lookups for ttl.
func NewAuthenticator(keys *Keys, ttl time.Duration) *Authenticator {
	return &Authenticator{keys: keys, ttl: ttl, now: keys.now, cache: map[string]cached{}}
}

// WithOIDC makes Authenticate verify credentials shaped like a JWT
// (see [LooksLikeJWT]) with o; anything else is still looked up as an API
// key. Call it before the first request. It returns a for chaining.
func (a *Authenticator) WithOIDC(o *OIDC) *Authenticator {
	a.oidc = o
	return a
}

// Credential returns the key a client sent: the api-key header (Azure SDK
// style) or Authorization: Bearer (OpenAI SDK style).
func Credential(h http.Header) string {
	if k := h.Get("Api-Key"); k != "" {
		return strings.TrimSpace(k)
	}
	if a := h.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// Authenticate returns the caller, or an *httperr.Error (401, or 503 when
// the key store cannot be reached). With an OIDC set, a JWT-shaped
// credential is verified as a token instead (see [OIDC.Authenticate]).
func (a *Authenticator) Authenticate(ctx context.Context, h http.Header) (Principal, error) {
	secret := Credential(h)
	if secret == "" {
		return Principal{}, httperr.Wrap(ErrNoKey, http.StatusUnauthorized, "invalid_api_key",
			"Access denied due to missing API key. Send it in the api-key header or as Authorization: Bearer <key>.")
	}
	if a.oidc != nil && LooksLikeJWT(secret) {
		return a.oidc.Authenticate(ctx, secret)
	}
	hk := hash(secret)
	now := a.now()
	a.mu.Lock()
	c, ok := a.cache[hk]
	a.mu.Unlock()
	if !ok || !now.Before(c.expires) {
		k, err := a.keys.verify(ctx, secret)
		c = cached{p: Principal{KeyID: k.Subject(), CredentialID: k.ID, Team: k.Team, App: k.App, Scope: k.Scope},
			err: err, expires: now.Add(a.ttl)}
		switch {
		case err == nil:
			if !k.ExpiresAt.IsZero() && k.ExpiresAt.Before(c.expires) {
				c.expires = k.ExpiresAt // expiry and rotation overlaps end on time, not a TTL later
			}
		case errors.Is(err, ErrBadKey) || errors.Is(err, ErrRevoked) || errors.Is(err, ErrExpired):
			c.expires = now.Add(min(a.ttl, negativeTTL))
			c.rotatedTo = k.RotatedTo
		default:
			// Store trouble: do not cache, tell the client to retry.
			return Principal{}, httperr.Wrap(err, http.StatusServiceUnavailable, "key_store_unavailable",
				"The gateway cannot check API keys right now. Retry shortly.")
		}
		a.mu.Lock()
		if len(a.cache) >= maxCache {
			for k, v := range a.cache {
				if now.After(v.expires) {
					delete(a.cache, k)
				}
			}
			if len(a.cache) >= maxCache {
				clear(a.cache)
			}
		}
		a.cache[hk] = c
		a.mu.Unlock()
	}
	if c.err != nil {
		msg := "Access denied due to invalid API key. Make sure you provide a valid key for the gateway."
		switch {
		case errors.Is(c.err, ErrRevoked):
			msg = "Access denied: this API key has been revoked."
		case errors.Is(c.err, ErrExpired):
			msg = "Access denied: this API key has expired."
			if c.rotatedTo != "" {
				msg = "Access denied: this API key was rotated and its overlap period has ended; use its replacement (" + keyPrefix + c.rotatedTo + ")."
			}
		}
		return Principal{}, httperr.Wrap(c.err, http.StatusUnauthorized, "invalid_api_key", msg)
	}
	return c.p, nil
}

// Forget drops the cached lookups of key id on this instance, so a key
// revoked or rotated here stops (or changes) at once; other instances
// follow within the cache TTL.
func (a *Authenticator) Forget(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h, c := range a.cache {
		if c.p.CredentialID == id {
			delete(a.cache, h)
		}
	}
}
