package upstream

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkRoundTrip compares this transport with a tuned net/http
// Transport on one kept-alive connection to a local backend, over HTTP and
// TLS: a 1 KiB JSON POST answered with 1 KiB, the request built per call
// as the proxy builds it. The backend runs in the same process, so ns/op includes its work;
// the difference between the two is the transports'.
//
//	go test -run '^$' -bench RoundTrip -benchtime=2000x ./internal/upstream/
func BenchmarkRoundTrip(b *testing.B) {
	answer := []byte(`{"id":"x","choices":[{"message":{"content":"` + strings.Repeat("a", 1000) + `"}}]}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	})
	body := []byte(`{"model":"gpt","messages":[{"role":"user","content":"` + strings.Repeat("q", 980) + `"}]}`)
	for _, scheme := range []string{"http", "https"} {
		var be *httptest.Server
		std, own := tuned(), New(nil)
		if scheme == "https" {
			be = httptest.NewTLSServer(h)
			std.TLSClientConfig = be.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
			own.TLSConfig = std.TLSClientConfig
		} else {
			be = httptest.NewServer(h)
		}
		for _, tt := range []struct {
			name string
			rt   http.RoundTripper
		}{{"upstream", own}, {"net-http", std}} {
			b.Run(scheme+"/"+tt.name, func(b *testing.B) {
				buf := make([]byte, 4096)
				b.ReportAllocs()
				for b.Loop() {
					req, err := http.NewRequest(http.MethodPost, be.URL+"/openai/v1/chat/completions", bytes.NewReader(body))
					if err != nil {
						b.Fatal(err)
					}
					req.Header["Content-Type"] = []string{"application/json"}
					req.Header["Api-Key"] = []string{"k"}
					resp, err := tt.rt.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					n := 0
					for {
						m, err := resp.Body.Read(buf)
						n += m
						if err == io.EOF {
							break
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					_ = resp.Body.Close()
					if n != len(answer) {
						b.Fatalf("read %d bytes", n)
					}
				}
			})
		}
		std.CloseIdleConnections()
		own.CloseIdleConnections()
		be.Close()
	}
}
