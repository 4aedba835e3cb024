package proxy

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// cutBackend answers a JSON body of size bytes (declared in Content-Length)
// but breaks the connection after sending half of it.
func cutBackend(t *testing.T, size int) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := `{"choices":[{"message":{"content":"` + strings.Repeat("x", size) + `"}}],"usage":{"prompt_tokens":4,"completion_tokens":6,"total_tokens":10}}`
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(body[:len(body)/2]))
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}))
	t.Cleanup(s.Close)
	return s
}

// TestCutNonStreamedAnswer (issue #16 item 5): a backend that breaks off a
// whole JSON answer gives the client a failure (a clean 502 while nothing
// was sent, an aborted response after), and the result says 502, not a
// 200 to be charged with estimated tokens.
func TestCutNonStreamedAnswer(t *testing.T) {
	p := New(NewTransport(), slog.New(slog.DiscardHandler), Options{MaxAttempts: 1})
	t.Run("small answer: 502 before anything is sent", func(t *testing.T) {
		rec, res := forward(t, p, model(cutBackend(t, 100).URL), Call{})
		if rec.Code != http.StatusBadGateway {
			t.Fatalf("client got %d %s, want 502", rec.Code, rec.Body)
		}
		var e struct {
			Error struct{ Code, Message, Type string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code != "backend_cut" {
			t.Errorf("body %s: want the OpenAI error shape with code backend_cut", rec.Body)
		}
		if res.Status != http.StatusBadGateway || res.Complete || res.Aborted || res.Usage.Reported {
			t.Errorf("result %+v: want status 502, incomplete, no usage", res)
		}
	})
	t.Run("large answer: the response is aborted", func(t *testing.T) {
		_, res := forward(t, p, model(cutBackend(t, 200<<10).URL), Call{})
		if !res.Aborted || res.Complete || res.Status != http.StatusBadGateway {
			t.Errorf("result %+v: want aborted (the caller breaks the connection), status 502", res)
		}
	})
}
