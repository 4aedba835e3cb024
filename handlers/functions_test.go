package handlers

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/policy"
)

// fakeAuth knows two bearer secrets: "admin" and "user".
type fakeAuth struct{}

func (fakeAuth) Authenticate(_ context.Context, h http.Header) (auth.Principal, error) {
	switch h.Get("Authorization") {
	case "Bearer admin":
		return auth.Principal{KeyID: "k-admin", Team: "ops", Scope: policy.Scope{Admin: true}}, nil
	case "Bearer user":
		return auth.Principal{KeyID: "k-user", Team: "dev"}, nil
	}
	return auth.Principal{}, httperr.Unauthorized("no key")
}

// TestTimerRoutes (issue #16 item 3): POST /drain runs only for the
// Functions host under Functions (loopback, the host's invocation header,
// no proxy marker) and only for admins standalone.
func TestTimerRoutes(t *testing.T) {
	const payload = `{"Data":{"tick":{"IsPastDue":false}},"Metadata":{}}`
	host := map[string]string{"X-Azure-Functions-InvocationId": "inv-1", "X-Azure-Functions-HostVersion": "4.1040.0", "User-Agent": "Azure-Functions-Host/4.1040.0"}
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{}
		for k, v := range host {
			h[k] = v
		}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	tests := []struct {
		name           string
		underFunctions bool
		remote         string
		hdr            map[string]string
		want           int
	}{
		{"functions: the host's timer call", true, "127.0.0.1:50000", host, 200},
		{"functions: the host over IPv6 loopback", true, "[::1]:50000", host, 200},
		{"functions: a client through the host proxy", true, "127.0.0.1:50000", with(map[string]string{"X-Ms-Invocation-Id": "inv-2"}), 404},
		{"functions: no invocation header", true, "127.0.0.1:50000", map[string]string{}, 404},
		{"functions: from another machine", true, "10.0.0.7:50000", host, 404},
		{"functions: an admin key does not help", true, "10.0.0.7:50000", with(map[string]string{"Authorization": "Bearer admin"}), 404},
		{"standalone: anonymous", false, "127.0.0.1:50000", host, 401},
		{"standalone: not an admin", false, "127.0.0.1:50000", map[string]string{"Authorization": "Bearer user"}, 403},
		{"standalone: admin", false, "10.0.0.7:50000", map[string]string{"Authorization": "Bearer admin"}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran := 0
			h := New(Deps{Log: slog.New(slog.DiscardHandler), Auth: fakeAuth{}, UnderFunctions: tt.underFunctions,
				Timers: map[string]Timer{"drain": func(context.Context) ([]string, error) { ran++; return nil, nil }}})
			req := httptest.NewRequest(http.MethodPost, "/drain", strings.NewReader(payload))
			req.RemoteAddr = tt.remote
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			b, _ := io.ReadAll(rec.Body)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, b)
			}
			if wantRan := tt.want == 200; (ran == 1) != wantRan {
				t.Errorf("timer ran %d times, want ran=%v", ran, wantRan)
			}
			if !strings.Contains(string(b), `"`) || (tt.want != 200 && !strings.Contains(string(b), `"error"`)) {
				t.Errorf("body %s, want JSON", b)
			}
		})
	}
}
