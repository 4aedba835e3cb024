package backendauth

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

type fakeCred struct {
	calls atomic.Int32
	ttl   time.Duration
	now   func() time.Time
	fail  atomic.Bool
	scope string
}

func (f *fakeCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	n := f.calls.Add(1)
	f.scope = o.Scopes[0]
	if f.fail.Load() {
		return azcore.AccessToken{}, errors.New("imds down")
	}
	return azcore.AccessToken{Token: "tok" + string(rune('0'+n)), ExpiresOn: f.now().Add(f.ttl)}, nil
}

func TestTokenCachedAndRefreshed(t *testing.T) {
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	fc := &fakeCred{ttl: time.Hour, now: clock}
	tk := NewToken(fc, Scope, clock)
	get := func() string {
		h := http.Header{}
		if err := tk.Authorize(context.Background(), h); err != nil {
			t.Fatal(err)
		}
		return h.Get("Authorization")
	}
	if got := get(); got != "Bearer tok1" {
		t.Fatalf("got %q", got)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); get() }()
	}
	wg.Wait()
	if c := fc.calls.Load(); c != 1 {
		t.Fatalf("GetToken called %d times, want 1 (cached)", c)
	}
	if fc.scope != Scope {
		t.Errorf("scope %q", fc.scope)
	}
	now = now.Add(56 * time.Minute) // inside the 5-minute refresh window
	if got := get(); got != "Bearer tok2" {
		t.Errorf("after refresh window got %q, want tok2", got)
	}
	// A failing refresh keeps the still-valid token.
	now = now.Add(56 * time.Minute)
	fc.fail.Store(true)
	if got := get(); got != "Bearer tok2" {
		t.Errorf("failed refresh: got %q, want the old token", got)
	}
	// Once expired, the failure surfaces.
	now = now.Add(10 * time.Minute)
	if err := tk.Authorize(context.Background(), http.Header{}); err == nil {
		t.Error("expired token and failing credential: want error")
	}
}

func TestAPIKey(t *testing.T) {
	h := http.Header{}
	_ = APIKey("k1").Authorize(context.Background(), h)
	if h.Get("api-key") != "k1" {
		t.Errorf("api-key %q", h.Get("api-key"))
	}
}
