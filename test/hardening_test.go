package test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
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

// runHandler runs a handler command to its end and returns its output.
func runHandler(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, handlerBin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestStoreFileErrors (items 6 and 7): a damaged embedded store and a store
// another gateway holds stop `handler serve` with a message naming the file
// and what to do: no panic, no stack trace, no bare "timeout".
func TestStoreFileErrors(t *testing.T) {
	s := startStack(t, stackOptions{})
	t.Run("second gateway on the same store", func(t *testing.T) {
		// Another listen address, so the store's lock is what stops it (on
		// the same address serve says a gateway is already running there).
		b, err := os.ReadFile(s.CfgPath)
		if err != nil {
			t.Fatal(err)
		}
		cfg2 := filepath.Join(t.TempDir(), "gateway2.yaml")
		if err := os.WriteFile(cfg2, regexp.MustCompile(`(?m)^listen: .*$`).ReplaceAll(b, []byte("listen: 127.0.0.1:0")), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := runHandler(t, nil, "serve", "--config", cfg2)
		if err == nil {
			t.Fatalf("a second gateway started on the same store:\n%s", out)
		}
		if !strings.Contains(out, filepath.Join(s.Dir, "gw.db")) || !strings.Contains(out, "another gateway") || strings.Contains(out, "goroutine ") {
			t.Errorf("output %q: want the file named and the likely holder", out)
		}
	})
	t.Run("damaged store", func(t *testing.T) {
		dir := t.TempDir()
		db := filepath.Join(dir, "gw.db")
		// The running stack's store with everything after its two meta
		// pages scribbled over (freelist and root included: small buckets
		// live inline in the root page), so bbolt opens the meta pages and
		// faults on the first page it reads.
		b, err := os.ReadFile(filepath.Join(s.Dir, "gw.db"))
		if err != nil || len(b) < 5*4096 {
			t.Fatalf("read the stack's store: %v (%d bytes)", err, len(b))
		}
		for i := 2 * 4096; i < len(b); i++ {
			b[i] = byte(i * 7)
		}
		if err := os.WriteFile(db, b, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "gateway.yaml")
		_ = os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nstore: { kind: embedded, path: "+db+" }\nbackends: [{ name: b, url: \"http://127.0.0.1:1\", auth: { none: true } }]\nmodels: { m: { targets: [{ backend: b, deployment: d }] } }\n"), 0o600)
		out, err := runHandler(t, nil, "serve", "--config", cfg)
		if err == nil {
			t.Fatalf("serve started on a damaged store:\n%s", out)
		}
		if !strings.Contains(out, db) || !strings.Contains(out, "Move the file aside") || strings.Contains(out, "goroutine ") || strings.Contains(out, "panic") {
			t.Errorf("output %q: want the file named and what to do, no panic", out)
		}
	})
}

// rawExchange writes req on a fresh connection (then, if trickle is set,
// one byte of it every interval) and reads the answer.
func rawExchange(t *testing.T, addr, req, trickle string, interval time.Duration) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := 0; i < len(trickle); i++ {
			time.Sleep(interval)
			if _, err := c.Write([]byte{trickle[i]}); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no HTTP answer: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestHTTPEdgeErrors (items 4 and 7): slow bodies time out with 408, and
// the answers net/http writes itself (431, 501) are OpenAI-shaped.
func TestHTTPEdgeErrors(t *testing.T) {
	s := startStack(t, stackOptions{extraTop: "bodyReadTimeout: 1s\nmaxHeaderBytes: 16384"})
	addr := strings.TrimPrefix(s.URL, "http://")
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	head := "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + s.Key + "\r\nContent-Type: application/json\r\n"
	tests := []struct {
		name    string
		req     string
		trickle string
		status  int
		code    string
	}{
		{"slow body", head + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n", body, 408, "request_timeout"},
		{"huge headers", head + "X-Big: " + strings.Repeat("a", 64<<10) + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body, "", 431, "headers_too_large"},
		{"gzip transfer encoding", head + "Transfer-Encoding: gzip, chunked\r\n\r\n", "", 501, "unsupported_transfer_encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawExchange(t, addr, tt.req, tt.trickle, 300*time.Millisecond)
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content-type %q, want JSON", ct)
			}
			if e := apiErrorOf(t, b); e.Error.Code != tt.code {
				t.Errorf("code %q, want %q", e.Error.Code, tt.code)
			}
		})
	}
	// A normal request on a keep-alive connection still works after the
	// deadline machinery (the deadline is lifted at the end of the body).
	status, _, b := jcall(t, http.MethodPost, s.URL+"/openai/v1/chat/completions", s.Key, body, nil)
	if status != 200 {
		t.Fatalf("normal request: %d %s", status, b)
	}
}
