package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/foundry-gateway/gateway/internal/policy"
	"github.com/foundry-gateway/gateway/internal/store"
)

// Table is the name of the keys table (without the configured prefix).
const Table = "Keys"

// partition holds every key row; keys are few and read by id.
const partition = "key"

// keyPrefix starts every key so leaked keys are easy to find in code scans.
const keyPrefix = "fgw-"

// Status of a key.
type Status string

// Key statuses. Only active and revoked are stored; expired is how an
// active key past its ExpiresAt reads.
const (
	StatusActive  Status = "active"
	StatusRevoked Status = "revoked"
	StatusExpired Status = "expired"
)

// Key is a stored key, without its secret.
type Key struct {
	// ID is the public part of the key: the secret starts with "fgw-<ID>.".
	ID   string `json:"id"`
	Team string `json:"team"`
	App  string `json:"app"`
	// Scope limits what the key may do.
	Scope     policy.Scope `json:"scope"`
	Status    Status       `json:"status"`
	CreatedAt time.Time    `json:"created_at"`
	// ExpiresAt, when set, is when the key stops working.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// RotatedTo is the id of the key that replaced this one (rotate); this
	// key then works until its ExpiresAt, the end of the overlap.
	RotatedTo string `json:"rotated_to,omitempty"`
	// RotatedFrom is the id of the key this one replaced.
	RotatedFrom string `json:"rotated_from,omitempty"`
	// Lineage is the id of the first key of a rotation chain (empty for a
	// key never rotated into): see [Key.Subject].
	Lineage string `json:"lineage,omitempty"`
	hash    string
}

// Subject is the caller id the gateway counts and owns things by (quota
// windows and limit overrides, jobs, usage rows): the id of the first key
// of the key's rotation chain, so a rotation does not reset a key's
// budget or hide its jobs from the replacement.
func (k Key) Subject() string {
	if k.Lineage != "" {
		return k.Lineage
	}
	return k.ID
}

// Prefix is the visible start of the key, safe to show and log: every
// secret starts with it, so a leaked key can be traced to its row.
func (k Key) Prefix() string { return keyPrefix + k.ID }

// Errors.
var (
	ErrNoKey      = errors.New("auth: no key")
	ErrBadKey     = errors.New("auth: invalid key")
	ErrRevoked    = errors.New("auth: key revoked")
	ErrExpired    = errors.New("auth: key expired")
	ErrBadRequest = errors.New("auth: bad request")
	ErrNotFound   = errors.New("auth: no such key")
	ErrConflict   = errors.New("auth: conflict")
)

// Keys manages the key table. The CLI and the HTTP API both use it.
type Keys struct {
	t   store.Table
	now func() time.Time
}

// NewKeys returns a key manager over the Keys table.
func NewKeys(t store.Table, now func() time.Time) *Keys {
	if now == nil {
		now = time.Now
	}
	return &Keys{t: t, now: now}
}

// Spec describes a key to create.
type Spec struct {
	Team, App string
	Scope     policy.Scope
	// ExpiresAt, when set, must be in the future.
	ExpiresAt time.Time
}

// MaxOverlap bounds a rotation's overlap period.
const MaxOverlap = 90 * 24 * time.Hour

// Create makes a new key and returns it with its secret, which is not
// stored and cannot be shown again.
func (k *Keys) Create(ctx context.Context, s Spec) (Key, string, error) {
	now := k.now().UTC().Truncate(time.Millisecond)
	if !policy.ValidName(s.Team) || !policy.ValidName(s.App) {
		return Key{}, "", fmt.Errorf("%w: team and app must be 1-64 characters of letters, digits, '-', '_' or '.'", ErrBadRequest)
	}
	if err := s.Scope.Validate(); err != nil {
		return Key{}, "", fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if !s.ExpiresAt.IsZero() && !s.ExpiresAt.After(now) {
		return Key{}, "", fmt.Errorf("%w: expiry %s is not in the future", ErrBadRequest, s.ExpiresAt.UTC().Format(time.RFC3339))
	}
	key := Key{Team: s.Team, App: s.App, Scope: s.Scope, Status: StatusActive, CreatedAt: now,
		ExpiresAt: s.ExpiresAt.UTC().Truncate(time.Millisecond)}
	return k.insert(ctx, key)
}

// insert gives key a fresh id and secret and stores it.
func (k *Keys) insert(ctx context.Context, key Key) (Key, string, error) {
	var idb [6]byte
	var sec [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return Key{}, "", err
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return Key{}, "", err
	}
	key.ID = hex.EncodeToString(idb[:])
	secret := keyPrefix + key.ID + "." + base64.RawURLEncoding.EncodeToString(sec[:])
	key.hash = hash(secret)
	if _, err := k.t.Insert(ctx, toEntity(key)); err != nil {
		return Key{}, "", fmt.Errorf("create key: %w", err)
	}
	return key, secret, nil
}

// List returns every key, newest first, without secrets. team, when not
// empty, keeps only that team's keys.
func (k *Keys) List(ctx context.Context, team string) ([]Key, error) {
	es, err := k.t.Query(ctx, store.Query{PartitionKey: partition})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	now := k.now()
	out := make([]Key, 0, len(es))
	for _, e := range es {
		if key := fromEntity(e, now); team == "" || key.Team == team {
			out = append(out, key)
		}
	}
	slices.SortStableFunc(out, func(a, b Key) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// Get returns one key by id (or by its visible prefix "fgw-<id>").
func (k *Keys) Get(ctx context.Context, id string) (Key, error) {
	key, _, err := k.get(ctx, id)
	return key, err
}

func (k *Keys) get(ctx context.Context, id string) (Key, string, error) {
	id = strings.TrimPrefix(id, keyPrefix)
	if !validID(id) {
		return Key{}, "", fmt.Errorf("%w: not a key id (want 12 hex digits, or fgw-<id>; never the whole key)", ErrBadRequest) // never echo it: it may be a secret
	}
	e, err := k.t.Get(ctx, partition, id)
	if errors.Is(err, store.ErrNotFound) {
		return Key{}, "", fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Key{}, "", fmt.Errorf("get key %s: %w", id, err)
	}
	return fromEntity(e, k.now()), e.ETag, nil
}

// Revoke marks a key revoked. Revoking a revoked key is not an error.
func (k *Keys) Revoke(ctx context.Context, id string) (Key, error) {
	for {
		key, etag, err := k.get(ctx, id)
		if err != nil {
			return Key{}, err
		}
		if key.Status == StatusRevoked {
			return key, nil
		}
		key.Status = StatusRevoked
		key.RevokedAt = k.now().UTC().Truncate(time.Millisecond)
		_, err = k.t.Update(ctx, toEntity(key), etag)
		if errors.Is(err, store.ErrPrecondition) {
			continue // changed under us; read again
		}
		if err != nil {
			return Key{}, fmt.Errorf("revoke key %s: %w", key.ID, err)
		}
		return key, nil
	}
}

// Rotate replaces key id with a new key of the same team, app and scope.
// The old key keeps working for overlap (0 = it stops now), then only the
// new one does. The new key expires after the old key's lifetime when the
// old one had an expiry, unless expiresAt is set. It returns the new key,
// its secret (shown once) and the old key as updated. Only an active key
// that was not rotated already can be rotated (ErrConflict otherwise).
func (k *Keys) Rotate(ctx context.Context, id string, overlap time.Duration, expiresAt time.Time) (Key, string, Key, error) {
	if overlap < 0 || overlap > MaxOverlap {
		return Key{}, "", Key{}, fmt.Errorf("%w: overlap must be between 0 and %v", ErrBadRequest, MaxOverlap)
	}
	old, etag, err := k.get(ctx, id)
	if err != nil {
		return Key{}, "", Key{}, err
	}
	if err := rotatable(old); err != nil {
		return Key{}, "", Key{}, err
	}
	now := k.now().UTC().Truncate(time.Millisecond)
	if expiresAt.IsZero() && !old.ExpiresAt.IsZero() {
		expiresAt = now.Add(old.ExpiresAt.Sub(old.CreatedAt))
	}
	if !expiresAt.IsZero() && !expiresAt.After(now.Add(overlap)) {
		return Key{}, "", Key{}, fmt.Errorf("%w: the new key's expiry %s must be after the overlap ends", ErrBadRequest, expiresAt.UTC().Format(time.RFC3339))
	}
	nk, secret, err := k.insert(ctx, Key{Team: old.Team, App: old.App, Scope: old.Scope, Status: StatusActive, CreatedAt: now,
		ExpiresAt: expiresAt.UTC().Truncate(time.Millisecond), RotatedFrom: old.ID, Lineage: old.Subject()})
	if err != nil {
		return Key{}, "", Key{}, err
	}
	for {
		old.RotatedTo = nk.ID
		if end := now.Add(overlap); old.ExpiresAt.IsZero() || end.Before(old.ExpiresAt) {
			old.ExpiresAt = end
		}
		_, err = k.t.Update(ctx, toEntity(old), etag)
		if err == nil {
			return nk, secret, fromEntity(toEntity(old), k.now()), nil
		}
		if errors.Is(err, store.ErrPrecondition) { // changed under us: read again
			if old, etag, err = k.get(ctx, id); err == nil {
				if err = rotatable(old); err == nil {
					continue
				}
			}
		}
		// The old key was not updated: the new one must not live on.
		if _, rerr := k.Revoke(context.WithoutCancel(ctx), nk.ID); rerr != nil {
			err = errors.Join(err, fmt.Errorf("revoke the unused new key %s: %w", nk.ID, rerr))
		}
		return Key{}, "", Key{}, err
	}
}

// Latest follows id's rotations to the key that replaced it last (id
// itself when it was never rotated).
func (k *Keys) Latest(ctx context.Context, id string) (Key, error) {
	key, err := k.Get(ctx, id)
	for hops := 0; err == nil && key.RotatedTo != "" && hops < 1000; hops++ {
		key, err = k.Get(ctx, key.RotatedTo)
	}
	return key, err
}

func rotatable(k Key) error {
	switch {
	case k.Status != StatusActive:
		return fmt.Errorf("%w: key %s is %s", ErrConflict, k.ID, k.Status)
	case k.RotatedTo != "":
		return fmt.Errorf("%w: key %s was already rotated to %s", ErrConflict, k.ID, k.RotatedTo)
	}
	return nil
}

// verify checks secret against the stored key row.
func (k *Keys) verify(ctx context.Context, secret string) (Key, error) {
	id, ok := parseID(secret)
	if !ok {
		return Key{}, ErrBadKey
	}
	e, err := k.t.Get(ctx, partition, id)
	if errors.Is(err, store.ErrNotFound) {
		return Key{}, ErrBadKey
	}
	if err != nil {
		return Key{}, fmt.Errorf("look up key: %w", err)
	}
	key := fromEntity(e, k.now())
	if subtle.ConstantTimeCompare([]byte(key.hash), []byte(hash(secret))) != 1 {
		return Key{}, ErrBadKey
	}
	switch key.Status {
	case StatusActive:
		return key, nil
	case StatusExpired:
		return key, ErrExpired
	}
	return key, ErrRevoked
}

// parseID takes the id out of "fgw-<id>.<secret>".
func parseID(secret string) (string, bool) {
	rest, ok := strings.CutPrefix(secret, keyPrefix)
	if !ok {
		return "", false
	}
	id, sec, ok := strings.Cut(rest, ".")
	if !ok || !validID(id) || len(sec) < 20 {
		return "", false
	}
	return id, true
}

func validID(id string) bool {
	if len(id) != 12 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// SplitList parses a comma-separated list ("" is none).
func SplitList(s string) []string {
	var out []string
	for _, r := range strings.Split(s, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// hash is SHA-256: keys carry 256 random bits, so a slow KDF adds nothing.
func hash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

func toEntity(k Key) store.Entity {
	p := map[string]any{
		"Hash":      k.hash,
		"Team":      k.Team,
		"App":       k.App,
		"Status":    string(k.Status),
		"CreatedAt": k.CreatedAt,
	}
	opt := func(name string, v any, set bool) {
		if set {
			p[name] = v
		}
	}
	opt("ExpiresAt", k.ExpiresAt, !k.ExpiresAt.IsZero())
	opt("RevokedAt", k.RevokedAt, !k.RevokedAt.IsZero())
	opt("RotatedTo", k.RotatedTo, k.RotatedTo != "")
	opt("RotatedFrom", k.RotatedFrom, k.RotatedFrom != "")
	opt("Lineage", k.Lineage, k.Lineage != "")
	sc := k.Scope
	opt("Models", strings.Join(sc.Models, ","), len(sc.Models) > 0)
	opt("Regions", strings.Join(sc.Regions, ","), len(sc.Regions) > 0)
	opt("Class", string(sc.Class), sc.Class != "")
	opt("MaxOutputTokens", sc.MaxOutputTokens, sc.MaxOutputTokens != 0)
	opt("OverCap", string(sc.OverCap), sc.OverCap != "")
	opt("MaxN", sc.MaxN, sc.MaxN != 0)
	opt("Admin", true, sc.Admin)
	opt("UsageRead", true, sc.UsageRead)
	opt("AuditRead", true, sc.AuditRead)
	if k.Status == StatusExpired { // derived, never stored
		p["Status"] = string(StatusActive)
	}
	return store.Entity{PartitionKey: partition, RowKey: k.ID, Props: p}
}

// fromEntity reads a key row; an active key past its expiry reads expired.
func fromEntity(e store.Entity, now time.Time) Key {
	s := func(n string) string { v, _ := e.Props[n].(string); return v }
	t := func(n string) time.Time { v, _ := e.Props[n].(time.Time); return v.UTC() }
	i := func(n string) int64 {
		switch v := e.Props[n].(type) {
		case int64:
			return v
		case float64: // written by hand in the portal
			return int64(v)
		}
		return 0
	}
	admin, _ := e.Props["Admin"].(bool)
	usageRead, _ := e.Props["UsageRead"].(bool)
	auditRead, _ := e.Props["AuditRead"].(bool)
	k := Key{ID: e.RowKey, Team: s("Team"), App: s("App"), Status: Status(s("Status")),
		CreatedAt: t("CreatedAt"), ExpiresAt: t("ExpiresAt"), RevokedAt: t("RevokedAt"),
		RotatedTo: s("RotatedTo"), RotatedFrom: s("RotatedFrom"), Lineage: s("Lineage"), hash: s("Hash"),
		Scope: policy.Scope{Models: SplitList(s("Models")), Regions: SplitList(s("Regions")), Class: policy.Class(s("Class")),
			MaxOutputTokens: i("MaxOutputTokens"), OverCap: policy.OverCap(s("OverCap")), MaxN: i("MaxN"), Admin: admin, UsageRead: usageRead, AuditRead: auditRead}}
	if k.Status == StatusActive && !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
		k.Status = StatusExpired
	}
	return k
}
