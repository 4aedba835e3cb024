package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/policy"
)

// Admin is key management as the admin API and the CLI both do it: the
// same requests, checks and results. It never returns a secret except
// once, in Created, for the key just made.
type Admin struct {
	Keys *Keys
	// KnownModel, when set, refuses scopes naming a model alias the
	// gateway does not serve (a typo would lock the key out silently).
	KnownModel func(alias string) bool
	// Changed, when set, is told the id of every key revoked or rotated
	// (the local authenticator's [Authenticator.Forget]).
	Changed func(keyID string)
}

func (a *Admin) changed(id string) {
	if a.Changed != nil {
		a.Changed(id)
	}
}

// CreateRequest is the body of POST /admin/keys and the flags of
// `handler keys create`.
type CreateRequest struct {
	Team  string       `json:"team"`
	App   string       `json:"app"`
	Scope policy.Scope `json:"scope"`
	// ExpiresAt (RFC 3339) or ExpiresIn (Go duration or days, "90d"):
	// when the key stops working. Neither: it does not expire.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	ExpiresIn string    `json:"expires_in,omitempty"`
}

// RotateRequest is the body of POST /admin/keys/{id}/rotate and the flags
// of `handler keys rotate`.
type RotateRequest struct {
	// Overlap is how long the old key keeps working (Go duration or days;
	// "" = DefaultOverlap, "0s" = it stops now).
	Overlap string `json:"overlap,omitempty"`
	// ExpiresAt / ExpiresIn of the new key; neither: the old key's
	// lifetime, or no expiry when the old key had none.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	ExpiresIn string    `json:"expires_in,omitempty"`
}

// DefaultOverlap is the rotation overlap when none is given.
const DefaultOverlap = 24 * time.Hour

// Created is a key just made, with its secret (shown this once).
type Created struct {
	// Secret is the whole API key.
	Secret string `json:"key"`
	Key
	Prefix string `json:"prefix"`
	// Replaces is the rotated key, as updated (rotate only).
	Replaces *Key `json:"replaces,omitempty"`
}

// Create makes a key.
func (a *Admin) Create(ctx context.Context, r CreateRequest) (Created, error) {
	exp, err := expiry(r.ExpiresAt, r.ExpiresIn, a.Keys.now())
	if err != nil {
		return Created{}, err
	}
	if err := a.checkModels(r.Scope); err != nil {
		return Created{}, err
	}
	k, secret, err := a.Keys.Create(ctx, Spec{Team: r.Team, App: r.App, Scope: r.Scope, ExpiresAt: exp})
	if err != nil {
		return Created{}, err
	}
	return Created{Secret: secret, Key: k, Prefix: k.Prefix()}, nil
}

// Rotate replaces key id (see [Keys.Rotate]).
func (a *Admin) Rotate(ctx context.Context, id string, r RotateRequest) (Created, error) {
	overlap := DefaultOverlap
	if r.Overlap != "" {
		var err error
		if overlap, err = ParseDuration(r.Overlap); err != nil {
			return Created{}, fmt.Errorf("%w: overlap: %w", ErrBadRequest, err)
		}
	}
	exp, err := expiry(r.ExpiresAt, r.ExpiresIn, a.Keys.now())
	if err != nil {
		return Created{}, err
	}
	nk, secret, old, err := a.Keys.Rotate(ctx, id, overlap, exp)
	if err != nil {
		return Created{}, err
	}
	a.changed(old.ID)
	return Created{Secret: secret, Key: nk, Prefix: nk.Prefix(), Replaces: &old}, nil
}

// Revoke revokes key id at once (on every instance within the key cache TTL).
func (a *Admin) Revoke(ctx context.Context, id string) (Key, error) {
	k, err := a.Keys.Revoke(ctx, id)
	if err == nil {
		a.changed(k.ID)
	}
	return k, err
}

// Get returns key id without its secret.
func (a *Admin) Get(ctx context.Context, id string) (Key, error) { return a.Keys.Get(ctx, id) }

// List returns the keys (of team, when set), newest first, without secrets.
func (a *Admin) List(ctx context.Context, team string) ([]Key, error) { return a.Keys.List(ctx, team) }

func (a *Admin) checkModels(s policy.Scope) error {
	if a.KnownModel == nil {
		return nil
	}
	for _, m := range s.Models {
		if !a.KnownModel(m) {
			return fmt.Errorf("%w: model %q is not served by this gateway", ErrBadRequest, m)
		}
	}
	return nil
}

// expiry resolves an absolute or relative expiry (zero: none).
func expiry(at time.Time, in string, now time.Time) (time.Time, error) {
	switch {
	case !at.IsZero() && in != "":
		return time.Time{}, fmt.Errorf("%w: give expires_at or expires_in, not both", ErrBadRequest)
	case in != "":
		d, err := ParseDuration(in)
		if err != nil || d <= 0 {
			return time.Time{}, fmt.Errorf("%w: expires_in %q must be a positive duration such as 720h or 90d", ErrBadRequest, in)
		}
		return now.Add(d), nil
	}
	return at, nil
}

// ParseDuration reads a Go duration ("36h", "90m") or whole days ("90d").
func ParseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 3650 {
			return 0, fmt.Errorf("%q is not a number of days (0-3650)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 24h or 7d", s)
	}
	return d, nil
}

// HTTPError maps a key-management error to its OpenAI-shaped response:
// 400 bad request, 404 unknown key, 409 conflict, 503 store trouble.
func HTTPError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrBadRequest):
		return httperr.Wrap(err, http.StatusBadRequest, "invalid_request_error", clientText(err))
	case errors.Is(err, ErrNotFound):
		return httperr.Wrap(err, http.StatusNotFound, "key_not_found", clientText(err))
	case errors.Is(err, ErrConflict):
		return httperr.Wrap(err, http.StatusConflict, "conflict", clientText(err))
	}
	return httperr.Wrap(err, http.StatusServiceUnavailable, "key_store_unavailable", "The key store cannot be reached right now. Retry shortly.")
}

// clientText is err's message from its sentinel on, without the sentinel's
// "auth: ..." text and whatever wrapped it.
func clientText(err error) string {
	msg := err.Error()
	for _, sentinel := range []error{ErrBadRequest, ErrNotFound, ErrConflict} {
		if i := strings.Index(msg, sentinel.Error()+": "); i >= 0 {
			rest := msg[i+len(sentinel.Error())+2:]
			if sentinel == ErrNotFound { //nolint:errorlint // comparing the loop's own values
				return "No key with id " + rest + "."
			}
			return rest
		}
	}
	return msg
}
