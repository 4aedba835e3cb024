package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// fakeBackend records what the gateway sends a backend.
type fakeBackend struct {
	srv      *httptest.Server
	mu       sync.Mutex
	headers  []http.Header
	paths    []string
	bodies   []string
	canceled chan struct{}
}

func newFakeBackend(t *testing.T) *fakeBackend {
	f := &fakeBackend{canceled: make(chan struct{}, 1)}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.headers = append(f.headers, r.Header.Clone())
		f.paths = append(f.paths, r.URL.RequestURI())
		f.bodies = append(f.bodies, string(b))
		f.mu.Unlock()
		if r.Header.Get("x-fake") == "block" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done() // until the gateway cancels
			f.canceled <- struct{}{}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func fakeStack(t *testing.T) (*stack, *fakeBackend) {
	f := newFakeBackend(t)
	s := startStack(t, stackOptions{
		env:           []string{"FAKE_BACKEND_KEY=backend-secret-1"},
		extraBackends: fmt.Sprintf(`  - { name: fake, url: "%s", auth: { apiKeyEnv: FAKE_BACKEND_KEY } }`, f.srv.URL),
		extraModels: `  fake-model:
    targets:
      - { backend: fake, deployment: fake-deployment }`,
	})
	return s, f
}

func TestForwardedHeadersAndCredentials(t *testing.T) {
	s, f := fakeStack(t)
	ctx := context.Background()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	resp := post(t, ctx, s.URL+"/openai/v1/chat/completions", s.Key,
		`{"model":"fake-model","messages":[{"role":"user","content":"hi"}]}`,
		map[string]string{"traceparent": tp, "X-Forwarded-For": "6.6.6.6", "Cookie": "a=b", "Connection": "X-Hop", "X-Hop": "1"})
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// Azure style: the path's deployment alias maps to the backend's deployment.
	resp = post(t, ctx, s.URL+"/openai/deployments/fake-model/chat/completions?api-version=2024-10-21", "",
		`{"messages":[{"role":"user","content":"hi"}]}`, map[string]string{"api-key": s.Key})
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.headers) != 2 {
		t.Fatalf("backend saw %d requests", len(f.headers))
	}
	h := f.headers[0]
	checks := []struct{ name, got, want string }{
		{"trace id kept", h.Get("Traceparent")[:36], tp[:36]},
		{"backend key set", h.Get("Api-Key"), "backend-secret-1"},
		{"client bearer dropped", h.Get("Authorization"), ""},
		{"x-forwarded-for dropped", h.Get("X-Forwarded-For"), ""},
		{"cookie dropped", h.Get("Cookie"), ""},
		{"connection-named header dropped", h.Get("X-Hop"), ""},
		{"v1 path", f.paths[0], "/openai/v1/chat/completions"},
		{"deployment path", f.paths[1], "/openai/deployments/fake-deployment/chat/completions?api-version=2024-10-21"},
		{"client api-key replaced", f.headers[1].Get("Api-Key"), "backend-secret-1"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	// The gateway is a hop of the trace: the backend's parent is the
	// gateway's attempt span, not the client's span.
	if got := h.Get("Traceparent"); len(got) != 55 || got[36:52] == tp[36:52] {
		t.Errorf("traceparent %q: want the client's trace id with the gateway's own span id", got)
	}
	var body map[string]any
	_ = json.Unmarshal([]byte(f.bodies[0]), &body)
	if body["model"] != "fake-deployment" {
		t.Errorf("v1 body model %v, want the backend deployment name", body["model"])
	}
	if h.Get("X-Ms-Client-Request-Id") == "" {
		t.Error("no request id sent to the backend")
	}
}

func TestClientDisconnectCancelsBackend(t *testing.T) {
	s, f := fakeStack(t)
	ctx, cancel := context.WithCancel(context.Background())
	resp := post(t, ctx, s.URL+"/openai/v1/chat/completions", s.Key,
		`{"model":"fake-model","stream":true,"messages":[{"role":"user","content":"hi"}]}`, map[string]string{"x-fake": "block"})
	buf := make([]byte, 64)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatalf("first chunk: %v", err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-f.canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("backend call was not cancelled after the client went away")
	}
}
