package auth

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/policy"
	"github.com/foundry-gateway/gateway/internal/store/embedded"
)

func newKeys(t *testing.T, now func() time.Time) *Keys {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tb, err := st.Table(context.Background(), Table)
	if err != nil {
		t.Fatal(err)
	}
	return NewKeys(tb, now)
}

func hdr(k, v string) http.Header { h := http.Header{}; h.Set(k, v); return h }

func TestKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	keys := newKeys(t, clock)
	k, secret, err := keys.Create(ctx, Spec{Team: "research", App: "notebook"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, k.Prefix()+".") {
		t.Errorf("secret %q does not start with its visible prefix %q", secret, k.Prefix())
	}
	a := NewAuthenticator(keys, 30*time.Second)
	a.now = clock
	tests := []struct {
		name string
		h    http.Header
		want int // 0 = ok
	}{
		{"bearer", hdr("Authorization", "Bearer "+secret), 0},
		{"api-key", hdr("api-key", secret), 0},
		{"lowercase bearer", hdr("Authorization", "bearer "+secret), 0},
		{"missing", http.Header{}, 401},
		{"wrong secret same id", hdr("api-key", k.Prefix()+".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 401},
		{"unknown id", hdr("api-key", "fgw-0123456789ab.AAAAAAAAAAAAAAAAAAAAAAAAAA"), 401},
		{"not our format", hdr("api-key", "sk-abc"), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Authenticate(ctx, tt.h)
			if tt.want == 0 {
				if err != nil || p.Team != "research" || p.App != "notebook" || p.KeyID != k.ID {
					t.Fatalf("got %+v, %v", p, err)
				}
				return
			}
			var he *httperr.Error
			if !errors.As(err, &he) || he.Status != tt.want {
				t.Fatalf("got %v, want status %d", err, tt.want)
			}
			if strings.Contains(he.Msg, secret) {
				t.Error("secret in error message")
			}
		})
	}

	// The store never holds the secret.
	e, _ := keys.t.Get(ctx, partition, k.ID)
	for name, v := range e.Props {
		if s, ok := v.(string); ok && strings.Contains(s, secret[len(k.Prefix())+1:]) {
			t.Errorf("property %s holds the secret", name)
		}
	}

	// Revocation: still cached until the TTL passes, refused after.
	if _, err := keys.Revoke(ctx, k.Prefix()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, hdr("api-key", secret)); err != nil {
		t.Errorf("within the cache TTL the key still works on this instance: %v", err)
	}
	now = now.Add(31 * time.Second)
	_, err = a.Authenticate(ctx, hdr("api-key", secret))
	if !errors.Is(err, ErrRevoked) {
		t.Errorf("after the TTL: got %v, want ErrRevoked", err)
	}
	// A fresh authenticator (another instance) refuses at once.
	if _, err := NewAuthenticator(keys, time.Minute).Authenticate(ctx, hdr("api-key", secret)); !errors.Is(err, ErrRevoked) {
		t.Errorf("other instance: got %v", err)
	}
	list, err := keys.List(ctx, "")
	if err != nil || len(list) != 1 || list[0].Status != StatusRevoked || list[0].RevokedAt.IsZero() {
		t.Errorf("list %+v %v", list, err)
	}
}

func TestCreateValidates(t *testing.T) {
	keys := newKeys(t, nil)
	for _, bad := range [][2]string{{"", "a"}, {"a", ""}, {"has space", "a"}, {"a/b", "c"}, {strings.Repeat("x", 65), "a"}} {
		if _, _, err := keys.Create(context.Background(), Spec{Team: bad[0], App: bad[1]}); !errors.Is(err, ErrBadRequest) {
			t.Errorf("Create(%q,%q) = %v, want ErrBadRequest", bad[0], bad[1], err)
		}
	}
}

func BenchmarkAuthenticateCached(b *testing.B) {
	st, _ := embedded.Open(filepath.Join(b.TempDir(), "s.db"))
	defer st.Close()
	tb, _ := st.Table(context.Background(), Table)
	keys := NewKeys(tb, nil)
	_, secret, _ := keys.Create(context.Background(), Spec{Team: "t", App: "a"})
	a := NewAuthenticator(keys, time.Minute)
	h := hdr("Authorization", "Bearer "+secret)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(context.Background(), h); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPrincipalScope checks that the key's scope reaches the Principal.
func TestPrincipalScope(t *testing.T) {
	ctx := context.Background()
	keys := newKeys(t, nil)
	tests := []struct {
		name  string
		scope policy.Scope
	}{
		{"any region", policy.Scope{}},
		{"eu only", policy.Scope{Regions: []string{"swedencentral", "westeurope"}}},
		{"everything", policy.Scope{Models: []string{"gpt-4o", "o3"}, Regions: []string{"swedencentral"}, Class: policy.ClassBatch,
			MaxOutputTokens: 2048, OverCap: policy.Reject, MaxN: 2, Admin: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, secret, err := keys.Create(ctx, Spec{Team: "t", App: "a", Scope: tt.scope})
			if err != nil {
				t.Fatal(err)
			}
			p, err := NewAuthenticator(keys, time.Second).Authenticate(ctx, hdr("api-key", secret))
			if err != nil {
				t.Fatal(err)
			}
			want := Principal{KeyID: k.ID, CredentialID: k.ID, Team: "t", App: "a", Scope: tt.scope}
			if !reflect.DeepEqual(p, want) {
				t.Errorf("got %+v, want %+v", p, want)
			}
		})
	}
	for _, bad := range []policy.Scope{{Regions: []string{"bad region"}}, {Class: "gold"}, {OverCap: policy.Reject}} {
		if _, _, err := keys.Create(ctx, Spec{Team: "t", App: "a", Scope: bad}); !errors.Is(err, ErrBadRequest) || !errors.Is(err, policy.ErrInvalid) {
			t.Errorf("Create with scope %+v: got %v, want ErrBadRequest wrapping policy.ErrInvalid", bad, err)
		}
	}
}
