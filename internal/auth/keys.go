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
	"strings"
	"time"

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

// Key statuses.
const (
	StatusActive  Status = "active"
	StatusRevoked Status = "revoked"
)

// Key is a stored key, without its secret.
type Key struct {
	// ID is the public part of the key: the secret starts with "fgw-<ID>.".
	ID   string `json:"id"`
	Team string `json:"team"`
	App  string `json:"app"`
	// Regions the key may be served from (backend regions); empty = any.
	Regions   []string  `json:"regions,omitempty"`
	Status    Status    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	hash      string
}

// Prefix is the visible start of the key, safe to show and log.
func (k Key) Prefix() string { return keyPrefix + k.ID }

// Errors.
var (
	ErrNoKey      = errors.New("auth: no key")
	ErrBadKey     = errors.New("auth: invalid key")
	ErrRevoked    = errors.New("auth: key revoked")
	ErrBadRequest = errors.New("auth: bad request")
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

// Create makes a new key for team and app and returns it with its secret,
// which is not stored and cannot be shown again. regions, when given,
// limit the backend regions the key is served from.
func (k *Keys) Create(ctx context.Context, team, app string, regions ...string) (Key, string, error) {
	if !validName(team) || !validName(app) {
		return Key{}, "", fmt.Errorf("%w: team and app must be 1-64 characters of letters, digits, '-', '_' or '.'", ErrBadRequest)
	}
	for _, r := range regions {
		if !validName(r) {
			return Key{}, "", fmt.Errorf("%w: region %q must be 1-64 characters of letters, digits, '-', '_' or '.'", ErrBadRequest, r)
		}
	}
	var idb [6]byte
	var sec [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return Key{}, "", err
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return Key{}, "", err
	}
	key := Key{ID: hex.EncodeToString(idb[:]), Team: team, App: app, Regions: regions, Status: StatusActive, CreatedAt: k.now().UTC().Truncate(time.Millisecond)}
	secret := keyPrefix + key.ID + "." + base64.RawURLEncoding.EncodeToString(sec[:])
	key.hash = hash(secret)
	if _, err := k.t.Insert(ctx, toEntity(key)); err != nil {
		return Key{}, "", fmt.Errorf("create key: %w", err)
	}
	return key, secret, nil
}

// List returns every key, newest first, without secrets.
func (k *Keys) List(ctx context.Context) ([]Key, error) {
	es, err := k.t.Query(ctx, store.Query{PartitionKey: partition})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	out := make([]Key, 0, len(es))
	for _, e := range es {
		out = append(out, fromEntity(e))
	}
	for i := 1; i < len(out); i++ { // insertion sort by CreatedAt desc; lists are short
		for j := i; j > 0 && out[j].CreatedAt.After(out[j-1].CreatedAt); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

// Get returns one key by id (or by its visible prefix "fgw-<id>").
func (k *Keys) Get(ctx context.Context, id string) (Key, error) {
	id = strings.TrimPrefix(id, keyPrefix)
	if !validID(id) {
		return Key{}, fmt.Errorf("%w: %q is not a key id", ErrBadRequest, id)
	}
	e, err := k.t.Get(ctx, partition, id)
	if err != nil {
		return Key{}, fmt.Errorf("get key %s: %w", id, err)
	}
	return fromEntity(e), nil
}

// Revoke marks a key revoked. Revoking a revoked key is not an error.
func (k *Keys) Revoke(ctx context.Context, id string) (Key, error) {
	id = strings.TrimPrefix(id, keyPrefix)
	for {
		if !validID(id) {
			return Key{}, fmt.Errorf("%w: %q is not a key id", ErrBadRequest, id)
		}
		e, err := k.t.Get(ctx, partition, id)
		if err != nil {
			return Key{}, fmt.Errorf("revoke key %s: %w", id, err)
		}
		key := fromEntity(e)
		if key.Status == StatusRevoked {
			return key, nil
		}
		key.Status = StatusRevoked
		key.RevokedAt = k.now().UTC().Truncate(time.Millisecond)
		_, err = k.t.Update(ctx, toEntity(key), e.ETag)
		if errors.Is(err, store.ErrPrecondition) {
			continue // changed under us; read again
		}
		if err != nil {
			return Key{}, fmt.Errorf("revoke key %s: %w", id, err)
		}
		return key, nil
	}
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
	key := fromEntity(e)
	if subtle.ConstantTimeCompare([]byte(key.hash), []byte(hash(secret))) != 1 {
		return Key{}, ErrBadKey
	}
	if key.Status != StatusActive {
		return Key{}, ErrRevoked
	}
	return key, nil
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

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// SplitRegions parses a comma-separated region list ("" is none).
func SplitRegions(s string) []string {
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
	if !k.RevokedAt.IsZero() {
		p["RevokedAt"] = k.RevokedAt
	}
	if len(k.Regions) > 0 {
		p["Regions"] = strings.Join(k.Regions, ",")
	}
	return store.Entity{PartitionKey: partition, RowKey: k.ID, Props: p}
}

func fromEntity(e store.Entity) Key {
	s := func(n string) string { v, _ := e.Props[n].(string); return v }
	t := func(n string) time.Time { v, _ := e.Props[n].(time.Time); return v.UTC() }
	return Key{ID: e.RowKey, Team: s("Team"), App: s("App"), Regions: SplitRegions(s("Regions")), Status: Status(s("Status")),
		CreatedAt: t("CreatedAt"), RevokedAt: t("RevokedAt"), hash: s("Hash")}
}
