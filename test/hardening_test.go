package test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// Regression tests of issue #16 (security hardening), one stack for all.

// apiErrorOf decodes an OpenAI-shaped error body or fails.
func apiErrorOf(t *testing.T, b []byte) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("not an OpenAI-shaped error (%v): %s", err, b)
	}
	return e
}

// TestDuplicateKeysRefused (item 1): a body repeating a key is refused
// with 400 naming the key wherever the gateway reads client JSON, so the
// caps cannot check one value while the backend reads another.
func TestDuplicateKeysRefused(t *testing.T) {
	s := startStack(t, stackOptions{})
	v1 := s.URL + "/openai/v1/chat/completions"
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name, url, body, key string
		hdr                  map[string]string
	}{
		{"max_tokens", v1, `{"model":"gpt-4o-mini",` + msgs + `,"max_tokens":5,"max_tokens":500}`, "max_tokens", nil},
		{"max_completion_tokens", v1, `{"model":"gpt-4o-mini",` + msgs + `,"max_completion_tokens":5,"max_completion_tokens":500}`, "max_completion_tokens", nil},
		{"n", v1, `{"model":"gpt-4o-mini",` + msgs + `,"n":1,"n":3}`, "n", nil},
		{"escaped twin", v1, `{"model":"gpt-4o-mini",` + msgs + `,"n":1,"\u006e":3}`, "n", nil},
		{"job submit", v1, `{"model":"gpt-4o-mini",` + msgs + `,"max_tokens":5,"max_tokens":500}`, "max_tokens", map[string]string{"Prefer": "respond-async"}},
		{"admin api", s.URL + "/gateway/admin/keys", `{"team":"a","app":"b","team":"c"}`, "team", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, b := jcall(t, http.MethodPost, tt.url, s.Key, tt.body, tt.hdr)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %.300s", status, b)
			}
			e := apiErrorOf(t, b)
			if e.Error.Code != "invalid_request_error" || !strings.Contains(e.Error.Message, `"`+tt.key+`"`) {
				t.Errorf("error %+v, want invalid_request_error naming %q", e.Error, tt.key)
			}
		})
	}
}
