package sim

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkChatCompletion measures the simulator's own cost per call, which
// every gateway benchmark pays on its backend side.
func BenchmarkChatCompletion(b *testing.B) {
	s, err := New(testConfig(), nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, body string }{
		{"non-stream", chatBody},
		{"stream", streamChatBody},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := []byte(bc.body)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodPost, classicChat, bytes.NewReader(body))
				s.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("status: got %d, want 200", w.Code)
				}
			}
		})
	}
}
