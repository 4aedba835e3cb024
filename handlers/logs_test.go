package handlers

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/route"
)

type noBackends struct{}

func (noBackends) Status() []route.BackendStatus { return nil }

// TestRefusedAdminCallLogsCaller (issue #16 item 8): a refused admin call
// logs the authenticated caller.
func TestRefusedAdminCallLogsCaller(t *testing.T) {
	var buf bytes.Buffer
	h := New(Deps{Log: slog.New(slog.NewJSONHandler(&buf, nil)), Auth: fakeAuth{}, Backends: noBackends{}})
	req := httptest.NewRequest(http.MethodGet, "/gateway/admin/backends", nil)
	req.Header.Set("Authorization", "Bearer user")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("status %d, want 403", rec.Code)
	}
	if !strings.Contains(buf.String(), `"msg":"refused"`) || !strings.Contains(buf.String(), `"key_id":"k-user"`) {
		t.Errorf("logs %s: want a refused line naming key_id k-user", buf.String())
	}
}

// TestServerErrorsLogAtError (issue #16 item 8): the request line of a 5xx
// answer is at ERROR, others at INFO.
func TestServerErrorsLogAtError(t *testing.T) {
	for _, tt := range []struct {
		status int
		level  string
	}{{502, `"level":"ERROR"`}, {504, `"level":"ERROR"`}, {200, `"level":"INFO"`}, {429, `"level":"INFO"`}} {
		var buf bytes.Buffer
		LogUsage{Log: slog.New(slog.NewJSONHandler(&buf, nil))}.Record(context.Background(), Event{Status: tt.status, Latency: time.Millisecond})
		if !strings.Contains(buf.String(), tt.level) {
			t.Errorf("status %d: %s, want %s", tt.status, buf.String(), tt.level)
		}
	}
}
