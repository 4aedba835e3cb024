package auth

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/policy"
)

// t0 is the start of every test clock.
var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func newClock() *testClock { return &testClock{now: t0} }

func mustCreate(t *testing.T, keys *Keys, s Spec) (Key, string) {
	t.Helper()
	k, secret, err := keys.Create(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return k, secret
}

// authWith authenticates secret and returns the *httperr.Error (nil on success).
func authWith(t *testing.T, a *Authenticator, secret string) (Principal, *httperr.Error) {
	t.Helper()
	p, err := a.Authenticate(context.Background(), hdr("api-key", secret))
	if err == nil {
		return p, nil
	}
	var he *httperr.Error
	if !errors.As(err, &he) {
		t.Fatalf("got %v, want *httperr.Error", err)
	}
	return p, he
}

func wantOK(t *testing.T, a *Authenticator, secret, keyID string) {
	t.Helper()
	p, he := authWith(t, a, secret)
	if he != nil {
		t.Fatalf("got %v, want key %s to authenticate", he, keyID)
	}
	if p.CredentialID != keyID {
		t.Fatalf("got key %s, want %s", p.CredentialID, keyID)
	}
}

// want401 checks a 401 invalid_api_key whose message contains msg and
// whose cause is cause.
func want401(t *testing.T, a *Authenticator, secret string, cause error, msg string) {
	t.Helper()
	_, he := authWith(t, a, secret)
	if he == nil {
		t.Fatalf("authenticated, want 401 %v", cause)
	}
	if he.Status != http.StatusUnauthorized || he.Code != "invalid_api_key" || !errors.Is(he, cause) || !strings.Contains(he.Msg, msg) {
		t.Fatalf("got %d %s %q (%v), want 401 invalid_api_key %v containing %q", he.Status, he.Code, he.Msg, he.Err, cause, msg)
	}
	if strings.Contains(he.Msg, secret) || strings.Contains(he.Error(), secret) {
		t.Fatal("the secret is in the error")
	}
}

func TestKeyScopeRoundTrip(t *testing.T) {
	ctx := context.Background()
	keys := newKeys(t, newClock().Now)
	tests := []struct {
		name  string
		scope policy.Scope
	}{
		{"zero", policy.Scope{}},
		{"every field", policy.Scope{Models: []string{"gpt-4o", "o3-mini"}, Regions: []string{"swedencentral", "westeurope"},
			Class: policy.ClassBatch, MaxOutputTokens: 1 << 40, OverCap: policy.Reject, MaxN: 7, Admin: true}},
		{"admin only", policy.Scope{Admin: true}},
		{"interactive clamp", policy.Scope{Class: policy.ClassInteractive, MaxOutputTokens: 1, OverCap: policy.Clamp}},
		{"one model", policy.Scope{Models: []string{"gpt-4o"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, secret := mustCreate(t, keys, Spec{Team: "research", App: "app", Scope: tt.scope})
			if !reflect.DeepEqual(k.Scope, tt.scope) {
				t.Errorf("Create: got %+v, want %+v", k.Scope, tt.scope)
			}
			got, err := keys.Get(ctx, k.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Scope, tt.scope) {
				t.Errorf("Get: got %+v, want %+v", got.Scope, tt.scope)
			}
			if got.Team != "research" || got.Status != StatusActive || !got.CreatedAt.Equal(t0) || !got.ExpiresAt.IsZero() {
				t.Errorf("Get: got %+v", got)
			}
			list, err := keys.List(ctx, "research")
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, l := range list {
				if l.ID == k.ID {
					found = true
					if !reflect.DeepEqual(l.Scope, tt.scope) {
						t.Errorf("List: got %+v, want %+v", l.Scope, tt.scope)
					}
				}
			}
			if !found {
				t.Errorf("List does not hold %s", k.ID)
			}
			p, err := NewAuthenticator(keys, time.Minute).Authenticate(ctx, hdr("api-key", secret))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.Scope, tt.scope) {
				t.Errorf("Principal: got %+v, want %+v", p.Scope, tt.scope)
			}
		})
	}
}

func TestKeyListFiltersAndOrders(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	keys := newKeys(t, clock.Now)
	a, _ := mustCreate(t, keys, Spec{Team: "research", App: "a"})
	clock.Add(time.Second)
	b, _ := mustCreate(t, keys, Spec{Team: "finance", App: "b"})
	clock.Add(time.Second)
	c, _ := mustCreate(t, keys, Spec{Team: "research", App: "c"})
	tests := []struct {
		team string
		want []string
	}{
		{"", []string{c.ID, b.ID, a.ID}},
		{"research", []string{c.ID, a.ID}},
		{"finance", []string{b.ID}},
		{"nobody", nil},
	}
	for _, tt := range tests {
		list, err := keys.List(ctx, tt.team)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, k := range list {
			got = append(got, k.ID)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("List(%q): got %v, want %v (newest first)", tt.team, got, tt.want)
		}
	}
}

func TestKeyExpiry(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	keys := newKeys(t, clock.Now)
	a := NewAuthenticator(keys, time.Second)

	if _, _, err := keys.Create(ctx, Spec{Team: "t", App: "a", ExpiresAt: t0}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("expiry now: got %v, want ErrBadRequest", err)
	}
	if _, _, err := keys.Create(ctx, Spec{Team: "t", App: "a", ExpiresAt: t0.Add(-time.Hour)}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("expiry in the past: got %v, want ErrBadRequest", err)
	}

	exp := t0.Add(time.Hour)
	k, secret := mustCreate(t, keys, Spec{Team: "t", App: "a", ExpiresAt: exp.In(time.FixedZone("CET", 3600))})
	if !k.ExpiresAt.Equal(exp) || k.ExpiresAt.Location() != time.UTC {
		t.Errorf("ExpiresAt: got %v, want %v in UTC", k.ExpiresAt, exp)
	}
	status := func() (Status, Status) {
		t.Helper()
		g, err := keys.Get(ctx, k.Prefix())
		if err != nil {
			t.Fatal(err)
		}
		l, err := keys.List(ctx, "")
		if err != nil || len(l) != 1 {
			t.Fatalf("list %v %v", l, err)
		}
		return g.Status, l[0].Status
	}

	clock.Add(time.Hour - time.Millisecond)
	wantOK(t, a, secret, k.ID)
	if g, l := status(); g != StatusActive || l != StatusActive {
		t.Errorf("before expiry: Get %s, List %s, want active", g, l)
	}

	clock.Add(time.Millisecond) // exactly ExpiresAt
	want401(t, a, secret, ErrExpired, "expired")
	if g, l := status(); g != StatusExpired || l != StatusExpired {
		t.Errorf("after expiry: Get %s, List %s, want expired", g, l)
	}
	// Expired is derived on read, never stored.
	e, err := keys.t.Get(ctx, partition, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Props["Status"]; got != string(StatusActive) {
		t.Errorf("stored status %v, want active", got)
	}
	// Another instance refuses it too.
	want401(t, NewAuthenticator(keys, time.Hour), secret, ErrExpired, "expired")
	// An expired key can still be revoked, and then reads revoked.
	if rk, err := keys.Revoke(ctx, k.ID); err != nil || rk.Status != StatusRevoked {
		t.Errorf("revoke expired key: %+v %v", rk, err)
	}
	if g, _ := status(); g != StatusRevoked {
		t.Errorf("after revoke: got %s, want revoked", g)
	}
}

func TestKeyRotate(t *testing.T) {
	ctx := context.Background()
	scope := policy.Scope{Models: []string{"gpt-4o"}, Regions: []string{"swedencentral"}, MaxOutputTokens: 512, MaxN: 1, Admin: true}

	t.Run("overlap", func(t *testing.T) {
		clock := newClock()
		keys := newKeys(t, clock.Now)
		old, oldSecret := mustCreate(t, keys, Spec{Team: "research", App: "nb", Scope: scope})
		clock.Add(time.Minute)
		nk, newSecret, upd, err := keys.Rotate(ctx, old.Prefix(), time.Hour, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		rotatedAt := t0.Add(time.Minute)
		if nk.ID == old.ID || !strings.HasPrefix(newSecret, nk.Prefix()+".") {
			t.Fatalf("new key %+v, secret prefix %.17s", nk, newSecret)
		}
		if nk.Team != old.Team || nk.App != old.App || !reflect.DeepEqual(nk.Scope, scope) {
			t.Errorf("new key does not carry team, app and scope: %+v", nk)
		}
		if nk.RotatedFrom != old.ID || upd.RotatedTo != nk.ID || nk.RotatedTo != "" {
			t.Errorf("links: new.RotatedFrom %q, old.RotatedTo %q", nk.RotatedFrom, upd.RotatedTo)
		}
		if !nk.ExpiresAt.IsZero() {
			t.Errorf("the old key had no expiry, so the new one has none; got %v", nk.ExpiresAt)
		}
		if !nk.CreatedAt.Equal(rotatedAt) {
			t.Errorf("new CreatedAt %v, want %v", nk.CreatedAt, rotatedAt)
		}
		if !upd.ExpiresAt.Equal(rotatedAt.Add(time.Hour)) || upd.Status != StatusActive {
			t.Errorf("old key after rotate: %+v, want active until %v", upd, rotatedAt.Add(time.Hour))
		}
		if got, err := keys.Get(ctx, old.ID); err != nil || got.RotatedTo != nk.ID || !got.ExpiresAt.Equal(upd.ExpiresAt) {
			t.Errorf("stored old key: %+v %v", got, err)
		}

		// During the overlap both work. A long cache TTL: the overlap must
		// still end on time.
		a := NewAuthenticator(keys, 2*time.Hour)
		wantOK(t, a, oldSecret, old.ID)
		wantOK(t, a, newSecret, nk.ID)
		// Both count as the same caller: quotas, jobs and usage follow the
		// key through its rotations.
		for _, sec := range []string{oldSecret, newSecret} {
			if p, _ := authWith(t, a, sec); p.KeyID != old.ID {
				t.Errorf("caller id %s, want the lineage %s", p.KeyID, old.ID)
			}
		}
		if nk.Lineage != old.ID || nk.Subject() != old.ID {
			t.Errorf("new key lineage %q subject %q, want %s", nk.Lineage, nk.Subject(), old.ID)
		}
		clock.Add(time.Hour - time.Millisecond)
		wantOK(t, a, oldSecret, old.ID)
		wantOK(t, a, newSecret, nk.ID)

		// After it only the new one, and the refusal names it.
		clock.Add(time.Millisecond)
		want401(t, a, oldSecret, ErrExpired, "("+keyPrefix+nk.ID+")")
		want401(t, NewAuthenticator(keys, time.Hour), oldSecret, ErrExpired, keyPrefix+nk.ID)
		wantOK(t, a, newSecret, nk.ID)
		if got, _ := keys.Get(ctx, old.ID); got.Status != StatusExpired {
			t.Errorf("old key status %s, want expired", got.Status)
		}

		// Rotating again is a conflict, whether in or after the overlap.
		if _, _, _, err := keys.Rotate(ctx, old.ID, time.Hour, time.Time{}); !errors.Is(err, ErrConflict) {
			t.Errorf("second rotation: got %v, want ErrConflict", err)
		}
		// The new key rotates in turn.
		if _, _, _, err := keys.Rotate(ctx, nk.ID, 0, time.Time{}); err != nil {
			t.Errorf("rotating the replacement: %v", err)
		}
	})

	t.Run("twice within the overlap", func(t *testing.T) {
		keys := newKeys(t, newClock().Now)
		old, _ := mustCreate(t, keys, Spec{Team: "t", App: "a"})
		if _, _, _, err := keys.Rotate(ctx, old.ID, time.Hour, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := keys.Rotate(ctx, old.ID, time.Hour, time.Time{}); !errors.Is(err, ErrConflict) {
			t.Errorf("got %v, want ErrConflict", err)
		}
		if l, _ := keys.List(ctx, ""); len(l) != 2 {
			t.Errorf("got %d keys, want 2: a refused rotation makes no key", len(l))
		}
	})

	t.Run("zero overlap stops the old key at once", func(t *testing.T) {
		clock := newClock()
		keys := newKeys(t, clock.Now)
		old, oldSecret := mustCreate(t, keys, Spec{Team: "t", App: "a"})
		a := NewAuthenticator(keys, time.Hour)
		wantOK(t, a, oldSecret, old.ID)
		nk, newSecret, upd, err := keys.Rotate(ctx, old.ID, 0, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if upd.Status != StatusExpired {
			t.Errorf("old key status %s, want expired", upd.Status)
		}
		// This instance forgets it on rotate (Admin.Changed); others see the
		// store at once.
		a.Forget(old.ID)
		want401(t, a, oldSecret, ErrExpired, keyPrefix+nk.ID)
		want401(t, NewAuthenticator(keys, time.Hour), oldSecret, ErrExpired, keyPrefix+nk.ID)
		wantOK(t, a, newSecret, nk.ID)
	})

	t.Run("revoked and expired keys do not rotate", func(t *testing.T) {
		clock := newClock()
		keys := newKeys(t, clock.Now)
		rev, _ := mustCreate(t, keys, Spec{Team: "t", App: "a"})
		if _, err := keys.Revoke(ctx, rev.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := keys.Rotate(ctx, rev.ID, time.Hour, time.Time{}); !errors.Is(err, ErrConflict) {
			t.Errorf("revoked: got %v, want ErrConflict", err)
		}
		exp, _ := mustCreate(t, keys, Spec{Team: "t", App: "a", ExpiresAt: t0.Add(time.Hour)})
		clock.Add(2 * time.Hour)
		if _, _, _, err := keys.Rotate(ctx, exp.ID, time.Hour, time.Time{}); !errors.Is(err, ErrConflict) {
			t.Errorf("expired: got %v, want ErrConflict", err)
		}
	})

	t.Run("new key inherits the lifetime", func(t *testing.T) {
		clock := newClock()
		keys := newKeys(t, clock.Now)
		old, _ := mustCreate(t, keys, Spec{Team: "t", App: "a", ExpiresAt: t0.Add(30 * 24 * time.Hour)})
		clock.Add(10 * 24 * time.Hour)
		nk, _, upd, err := keys.Rotate(ctx, old.ID, time.Hour, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		now := clock.Now()
		if want := now.Add(30 * 24 * time.Hour); !nk.ExpiresAt.Equal(want) {
			t.Errorf("new key expires %v, want %v (the old key's 30 days)", nk.ExpiresAt, want)
		}
		if want := now.Add(time.Hour); !upd.ExpiresAt.Equal(want) {
			t.Errorf("old key expires %v, want the overlap's end %v", upd.ExpiresAt, want)
		}
	})

	t.Run("overlap never extends the old key", func(t *testing.T) {
		keys := newKeys(t, newClock().Now)
		old, _ := mustCreate(t, keys, Spec{Team: "t", App: "a", ExpiresAt: t0.Add(2 * time.Hour)})
		_, _, upd, err := keys.Rotate(ctx, old.ID, 24*time.Hour, t0.Add(48*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if !upd.ExpiresAt.Equal(old.ExpiresAt) {
			t.Errorf("old key expires %v, want unchanged %v", upd.ExpiresAt, old.ExpiresAt)
		}
	})

	t.Run("explicit expiry", func(t *testing.T) {
		keys := newKeys(t, newClock().Now)
		old, _ := mustCreate(t, keys, Spec{Team: "t", App: "a", ExpiresAt: t0.Add(time.Hour * 24 * 30)})
		want := t0.Add(7 * 24 * time.Hour)
		nk, _, _, err := keys.Rotate(ctx, old.ID, time.Hour, want)
		if err != nil {
			t.Fatal(err)
		}
		if !nk.ExpiresAt.Equal(want) {
			t.Errorf("new key expires %v, want %v", nk.ExpiresAt, want)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		keys := newKeys(t, newClock().Now)
		old, _ := mustCreate(t, keys, Spec{Team: "t", App: "a"})
		tests := []struct {
			name      string
			id        string
			overlap   time.Duration
			expiresAt time.Time
			want      error
		}{
			{"negative overlap", old.ID, -time.Second, time.Time{}, ErrBadRequest},
			{"overlap above the max", old.ID, MaxOverlap + time.Second, time.Time{}, ErrBadRequest},
			{"new expiry inside the overlap", old.ID, 2 * time.Hour, t0.Add(time.Hour), ErrBadRequest},
			{"new expiry in the past", old.ID, 0, t0.Add(-time.Hour), ErrBadRequest},
			{"not an id", "nope", time.Hour, time.Time{}, ErrBadRequest},
			{"unknown id", "fgw-0123456789ab", time.Hour, time.Time{}, ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if _, _, _, err := keys.Rotate(ctx, tt.id, tt.overlap, tt.expiresAt); !errors.Is(err, tt.want) {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
			})
		}
		// None of them rotated or created anything.
		if l, _ := keys.List(ctx, ""); len(l) != 1 || l[0].RotatedTo != "" || !l[0].ExpiresAt.IsZero() {
			t.Errorf("keys after refused rotations: %+v", l)
		}
		// The maximum itself is fine.
		if _, _, _, err := keys.Rotate(ctx, old.ID, MaxOverlap, time.Time{}); err != nil {
			t.Errorf("overlap of MaxOverlap: %v", err)
		}
	})
}

// TestAuthenticatorCacheEndsAtExpiry: a cached lookup never outlives the
// key, however long the TTL.
func TestAuthenticatorCacheEndsAtExpiry(t *testing.T) {
	clock := newClock()
	keys := newKeys(t, clock.Now)
	k, secret := mustCreate(t, keys, Spec{Team: "t", App: "a", ExpiresAt: t0.Add(10 * time.Second)})
	a := NewAuthenticator(keys, time.Hour)
	wantOK(t, a, secret, k.ID) // cached now
	clock.Add(10*time.Second - time.Millisecond)
	wantOK(t, a, secret, k.ID)
	clock.Add(time.Millisecond) // TTL far from over, key expired
	want401(t, a, secret, ErrExpired, "expired")
}

func TestAuthenticatorRevocation(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	keys := newKeys(t, clock.Now)
	const ttl = 30 * time.Second
	a := NewAuthenticator(keys, ttl)

	t.Run("seen within the TTL", func(t *testing.T) {
		k, secret := mustCreate(t, keys, Spec{Team: "t", App: "ttl"})
		wantOK(t, a, secret, k.ID)
		if _, err := keys.Revoke(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		clock.Add(ttl - time.Millisecond)
		wantOK(t, a, secret, k.ID) // still cached on this instance: bounded staleness
		clock.Add(time.Millisecond)
		want401(t, a, secret, ErrRevoked, "revoked")
	})

	t.Run("seen at once after Forget", func(t *testing.T) {
		k, secret := mustCreate(t, keys, Spec{Team: "t", App: "forget"})
		other, otherSecret := mustCreate(t, keys, Spec{Team: "t", App: "other"})
		wantOK(t, a, secret, k.ID)
		wantOK(t, a, otherSecret, other.ID)
		if _, err := keys.Revoke(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := keys.Revoke(ctx, other.ID); err != nil {
			t.Fatal(err)
		}
		a.Forget(k.ID)
		want401(t, a, secret, ErrRevoked, "revoked")
		// Forget drops only that key's lookups.
		wantOK(t, a, otherSecret, other.ID)
	})

	t.Run("revoking twice is fine", func(t *testing.T) {
		k, _ := mustCreate(t, keys, Spec{Team: "t", App: "twice"})
		first, err := keys.Revoke(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		clock.Add(time.Minute)
		second, err := keys.Revoke(ctx, k.ID)
		if err != nil || !second.RevokedAt.Equal(first.RevokedAt) {
			t.Errorf("second revoke: %+v %v, want RevokedAt %v kept", second, err, first.RevokedAt)
		}
	})
}

// A chain of rotations keeps one lineage (the first key's id), and Latest
// follows the chain to the key in use.
func TestKeyLineage(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	keys := newKeys(t, clock.Now)
	first, _ := mustCreate(t, keys, Spec{Team: "research", App: "a"})
	second, _, _, err := keys.Rotate(ctx, first.ID, time.Minute, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	third, secret, _, err := keys.Rotate(ctx, second.ID, time.Minute, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []Key{first, second, third} {
		got, err := keys.Get(ctx, k.ID)
		if err != nil || got.Subject() != first.ID {
			t.Errorf("key %s: subject %q (%v), want %s", k.ID, got.Subject(), err, first.ID)
		}
	}
	if p, he := authWith(t, NewAuthenticator(keys, time.Second), secret); he != nil || p.KeyID != first.ID || p.CredentialID != third.ID {
		t.Errorf("third key authenticates as %+v (%v), want caller %s, credential %s", p, he, first.ID, third.ID)
	}
	for _, id := range []string{first.ID, second.ID, third.ID} {
		if got, err := keys.Latest(ctx, id); err != nil || got.ID != third.ID {
			t.Errorf("Latest(%s) = %s (%v), want %s", id, got.ID, err, third.ID)
		}
	}
}
