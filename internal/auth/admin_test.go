package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/policy"
)

func newAdmin(t *testing.T, clock *testClock) (*Admin, *[]string) {
	t.Helper()
	var changed []string
	return &Admin{
		Keys:       newKeys(t, clock.Now),
		KnownModel: func(m string) bool { return m == "gpt-4o" || m == "o3-mini" },
		Changed:    func(id string) { changed = append(changed, id) },
	}, &changed
}

func TestAdminCreate(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		req     CreateRequest
		wantErr error
		wantExp time.Time // zero: no expiry
	}{
		{name: "known models", req: CreateRequest{Team: "t", App: "a", Scope: policy.Scope{Models: []string{"gpt-4o", "o3-mini"}}}},
		{name: "unknown model", req: CreateRequest{Team: "t", App: "a", Scope: policy.Scope{Models: []string{"gpt-4o", "gpt-4o-typo"}}},
			wantErr: ErrBadRequest},
		{name: "invalid scope", req: CreateRequest{Team: "t", App: "a", Scope: policy.Scope{Class: "gold"}}, wantErr: ErrBadRequest},
		{name: "expires_in days", req: CreateRequest{Team: "t", App: "a", ExpiresIn: "90d"}, wantExp: t0.Add(90 * 24 * time.Hour)},
		{name: "expires_in go duration", req: CreateRequest{Team: "t", App: "a", ExpiresIn: "36h30m"}, wantExp: t0.Add(36*time.Hour + 30*time.Minute)},
		{name: "expires_at", req: CreateRequest{Team: "t", App: "a", ExpiresAt: t0.Add(48 * time.Hour)}, wantExp: t0.Add(48 * time.Hour)},
		{name: "both", req: CreateRequest{Team: "t", App: "a", ExpiresAt: t0.Add(48 * time.Hour), ExpiresIn: "1d"}, wantErr: ErrBadRequest},
		{name: "expires_in zero", req: CreateRequest{Team: "t", App: "a", ExpiresIn: "0d"}, wantErr: ErrBadRequest},
		{name: "expires_in negative", req: CreateRequest{Team: "t", App: "a", ExpiresIn: "-1h"}, wantErr: ErrBadRequest},
		{name: "expires_in garbage", req: CreateRequest{Team: "t", App: "a", ExpiresIn: "soon"}, wantErr: ErrBadRequest},
		{name: "expires_at in the past", req: CreateRequest{Team: "t", App: "a", ExpiresAt: t0.Add(-time.Second)}, wantErr: ErrBadRequest},
		{name: "bad team", req: CreateRequest{Team: "a b", App: "a"}, wantErr: ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			adm, changed := newAdmin(t, newClock())
			c, err := adm.Create(ctx, tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				if he := httperr.From(HTTPError(err)); he.Status != http.StatusBadRequest {
					t.Errorf("HTTPError: got %d, want 400", he.Status)
				}
				if l, _ := adm.List(ctx, ""); len(l) != 0 {
					t.Errorf("a refused create stored %d keys", len(l))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Secret == "" || c.Prefix != c.Key.Prefix() || !strings.HasPrefix(c.Secret, c.Prefix+".") {
				t.Errorf("created %+v", c)
			}
			if !c.ExpiresAt.Equal(tt.wantExp) {
				t.Errorf("ExpiresAt: got %v, want %v", c.ExpiresAt, tt.wantExp)
			}
			if got, err := adm.Get(ctx, c.ID); err != nil || !got.ExpiresAt.Equal(tt.wantExp) || got.Team != tt.req.Team {
				t.Errorf("stored %+v %v", got, err)
			}
			if len(*changed) != 0 {
				t.Errorf("Changed called on create: %v", *changed)
			}
		})
	}

	// Without KnownModel any alias passes.
	adm := &Admin{Keys: newKeys(t, newClock().Now)}
	if _, err := adm.Create(ctx, CreateRequest{Team: "t", App: "a", Scope: policy.Scope{Models: []string{"anything"}}}); err != nil {
		t.Errorf("no KnownModel: %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"90d", 90 * 24 * time.Hour, false},
		{"1d", 24 * time.Hour, false},
		{"0d", 0, false},
		{"3650d", 3650 * 24 * time.Hour, false},
		{"3651d", 0, true},
		{"-1d", 0, true},
		{"1.5d", 0, true},
		{"d", 0, true},
		{"36h", 36 * time.Hour, false},
		{"90m", 90 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"0s", 0, false},
		{"", 0, true},
		{"7", 0, true},
		{"1w", 0, true},
		{"soon", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got %v, %v; want error %v", got, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHTTPError(t *testing.T) {
	keys := newKeys(t, newClock().Now)
	_, notFound := keys.Get(context.Background(), "fgw-0123456789ab")
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantCode   string
		wantMsg    string
		prefixFree bool // the message does not start with "auth: "
	}{
		{"bad request", fmt.Errorf("%w: overlap must be positive", ErrBadRequest), 400, "invalid_request_error", "overlap must be positive", true},
		{"not found", notFound, 404, "key_not_found", "No key with id 0123456789ab.", true},
		{"conflict", fmt.Errorf("%w: key x is revoked", ErrConflict), 409, "conflict", "key x is revoked", true},
		// clientText only strips a leading prefix; Admin never wraps these further.
		{"wrapped bad request", fmt.Errorf("create: %w", fmt.Errorf("%w: bad", ErrBadRequest)), 400, "invalid_request_error", "bad", false},
		{"store trouble", errors.New("dial tcp: connection refused"), 503, "key_store_unavailable", "Retry shortly", true},
		{"canceled", context.Canceled, 503, "key_store_unavailable", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			he := httperr.From(HTTPError(tt.err))
			if he.Status != tt.wantStatus || he.Code != tt.wantCode || !strings.Contains(he.Msg, tt.wantMsg) {
				t.Fatalf("got %d %s %q, want %d %s containing %q", he.Status, he.Code, he.Msg, tt.wantStatus, tt.wantCode, tt.wantMsg)
			}
			if tt.prefixFree && strings.Contains(he.Msg, "auth: ") {
				t.Errorf("message %q keeps the package prefix", he.Msg)
			}
			if !errors.Is(he, tt.err) {
				t.Error("the cause is not kept for logs")
			}
			if he.Status == 503 && strings.Contains(he.Msg, "dial") {
				t.Errorf("store details leak to the client: %q", he.Msg)
			}
		})
	}
	if HTTPError(nil) != nil {
		t.Error("HTTPError(nil) != nil")
	}
}

func TestAdminChanged(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	adm, changed := newAdmin(t, clock)
	a := NewAuthenticator(adm.Keys, time.Hour)
	adm.Changed = func(id string) { *changed = append(*changed, id); a.Forget(id) }

	c1, err := adm.Create(ctx, CreateRequest{Team: "t", App: "a"})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := adm.Create(ctx, CreateRequest{Team: "t", App: "b"})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, a, c1.Secret, c1.ID)
	wantOK(t, a, c2.Secret, c2.ID)

	// Revoke by visible prefix: the hook gets the bare id.
	if _, err := adm.Revoke(ctx, c1.Prefix); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(*changed, ","); got != c1.ID {
		t.Fatalf("after revoke: Changed got %q, want %q", got, c1.ID)
	}
	want401(t, a, c1.Secret, ErrRevoked, "revoked") // at once, despite the hour TTL

	// Rotate: the hook gets the old id, not the new one.
	r, err := adm.Rotate(ctx, c2.ID, RotateRequest{Overlap: "0s"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(*changed, ","), c1.ID+","+c2.ID; got != want {
		t.Fatalf("after rotate: Changed got %q, want %q", got, want)
	}
	want401(t, a, c2.Secret, ErrExpired, r.Prefix)
	wantOK(t, a, r.Secret, r.ID)

	// Failures do not call it.
	if _, err := adm.Revoke(ctx, "fgw-0123456789ab"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
	if _, err := adm.Rotate(ctx, c1.ID, RotateRequest{}); !errors.Is(err, ErrConflict) {
		t.Errorf("rotate revoked: %v", err)
	}
	if _, err := adm.Rotate(ctx, r.ID, RotateRequest{Overlap: "later"}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("rotate with bad overlap: %v", err)
	}
	if len(*changed) != 2 {
		t.Errorf("Changed called on failures: %v", *changed)
	}

	// Without a hook nothing breaks.
	adm.Changed = nil
	if _, err := adm.Revoke(ctx, r.ID); err != nil {
		t.Errorf("revoke without hook: %v", err)
	}
}

func TestAdminRotate(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		created    CreateRequest
		req        RotateRequest
		wantErr    error
		wantOldExp time.Duration // after t0
		wantNewExp time.Duration // after t0; 0 = none
	}{
		{name: "default overlap", created: CreateRequest{Team: "t", App: "a"}, req: RotateRequest{}, wantOldExp: DefaultOverlap},
		{name: "overlap in days", created: CreateRequest{Team: "t", App: "a"}, req: RotateRequest{Overlap: "7d"}, wantOldExp: 7 * 24 * time.Hour},
		{name: "zero overlap", created: CreateRequest{Team: "t", App: "a"}, req: RotateRequest{Overlap: "0s"}, wantOldExp: 0},
		{name: "inherits lifetime", created: CreateRequest{Team: "t", App: "a", ExpiresIn: "30d"}, req: RotateRequest{Overlap: "1h"},
			wantOldExp: time.Hour, wantNewExp: 30 * 24 * time.Hour},
		{name: "new expires_in", created: CreateRequest{Team: "t", App: "a", ExpiresIn: "30d"}, req: RotateRequest{Overlap: "1h", ExpiresIn: "90d"},
			wantOldExp: time.Hour, wantNewExp: 90 * 24 * time.Hour},
		{name: "new expires_at", created: CreateRequest{Team: "t", App: "a"}, req: RotateRequest{ExpiresAt: t0.Add(72 * time.Hour)},
			wantOldExp: DefaultOverlap, wantNewExp: 72 * time.Hour},
		{name: "bad overlap", created: CreateRequest{Team: "t", App: "a"}, req: RotateRequest{Overlap: "forever"}, wantErr: ErrBadRequest},
		{name: "negative overlap", created: CreateRequest{Team: "t", App: "a"}, req: RotateRequest{Overlap: "-1h"}, wantErr: ErrBadRequest},
		{name: "both expiries", created: CreateRequest{Team: "t", App: "a"}, req: RotateRequest{ExpiresIn: "1d", ExpiresAt: t0.Add(72 * time.Hour)}, wantErr: ErrBadRequest},
		{name: "new key ends in the overlap", created: CreateRequest{Team: "t", App: "a"}, req: RotateRequest{Overlap: "2d", ExpiresIn: "1d"}, wantErr: ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			adm, _ := newAdmin(t, newClock())
			old, err := adm.Create(ctx, tt.created)
			if err != nil {
				t.Fatal(err)
			}
			r, err := adm.Rotate(ctx, old.ID, tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Replaces == nil || r.Replaces.ID != old.ID || r.Replaces.RotatedTo != r.ID || r.RotatedFrom != old.ID {
				t.Fatalf("rotate result %+v", r)
			}
			if got, want := r.Replaces.ExpiresAt, t0.Add(tt.wantOldExp); !got.Equal(want) {
				t.Errorf("old key expires %v, want %v", got, want)
			}
			var want time.Time
			if tt.wantNewExp != 0 {
				want = t0.Add(tt.wantNewExp)
			}
			if !r.ExpiresAt.Equal(want) {
				t.Errorf("new key expires %v, want %v", r.ExpiresAt, want)
			}
		})
	}
}

// TestAdminJSONHasNoSecrets: the secret is in Created's JSON, once, and
// neither it nor its stored hash is ever in a Key's or a list's JSON.
func TestAdminJSONHasNoSecrets(t *testing.T) {
	ctx := context.Background()
	adm, _ := newAdmin(t, newClock())
	c, err := adm.Create(ctx, CreateRequest{Team: "t", App: "a", Scope: policy.Scope{Models: []string{"gpt-4o"}, Admin: true}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := adm.Rotate(ctx, c.ID, RotateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	secrets := []string{c.Secret, r.Secret}
	forbidden := []string{c.Secret, sum(c.Secret), r.Secret, sum(r.Secret)}
	// The random half alone must not leak either.
	for _, s := range secrets {
		forbidden = append(forbidden, s[strings.Index(s, ".")+1:])
	}
	mustJSON := func(v any) string {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	for _, tt := range []struct {
		name   string
		c      Created
		secret string
	}{{"create", c, c.Secret}, {"rotate", r, r.Secret}} {
		js := mustJSON(tt.c)
		var m map[string]any
		if err := json.Unmarshal([]byte(js), &m); err != nil {
			t.Fatal(err)
		}
		if m["key"] != tt.secret || m["prefix"] != tt.c.Key.Prefix() || m["id"] != tt.c.ID {
			t.Errorf("%s: JSON %s lacks key, prefix or id", tt.name, js)
		}
		for _, f := range forbidden {
			if f != tt.secret && f != tt.secret[strings.Index(tt.secret, ".")+1:] && strings.Contains(js, f) {
				t.Errorf("%s: JSON holds another secret or a hash: %s", tt.name, js)
			}
		}
		if n := strings.Count(js, tt.secret); n != 1 {
			t.Errorf("%s: secret appears %d times, want 1", tt.name, n)
		}
	}

	got, err := adm.Get(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	list, err := adm.List(ctx, "")
	if err != nil || len(list) != 2 {
		t.Fatalf("list %v %v", list, err)
	}
	if got.hash == "" {
		t.Fatal("test is void: the key read has no hash")
	}
	for name, v := range map[string]any{"get": got, "list": list, "replaces": r.Replaces, "created key": c.Key} {
		js := mustJSON(v)
		for _, f := range forbidden {
			if strings.Contains(js, f) {
				t.Errorf("%s JSON holds a secret or its hash %.12s…: %s", name, f, js)
			}
		}
		if !strings.Contains(js, `"id":"`+c.ID+`"`) && !strings.Contains(js, `"id":"`+r.ID+`"`) {
			t.Errorf("%s JSON has no id: %s", name, js)
		}
	}
}
