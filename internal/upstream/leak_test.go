package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}

// Every way a call can end leaves no socket open once the pool is closed:
// no descriptor leaks on early Close, cancellation, cut answers, refused
// requests, Connection: close or dead pooled connections.
func TestNoDescriptorLeak(t *testing.T) {
	s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
		for {
			req := s.readRequest(br)
			if req == nil {
				return
			}
			switch req.URL.Path {
			case "/big":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
				io.WriteString(c, strings.Repeat("b", 1<<20))
			case "/part":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart;")
			case "/cut":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ncut")
				return
			case "/close":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
				return
			case "/once":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				return // closed while pooled
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		}
	})
	tr, _ := newTransport()
	call(t, tr, "GET", s.URL()+"/warm", "")
	tr.CloseIdleConnections()
	time.Sleep(20 * time.Millisecond) // the server's side of it closes
	base := openFDs(t)
	do := func(ctx context.Context, path string, read func(io.Reader)) {
		req, _ := http.NewRequestWithContext(ctx, "POST", s.URL()+path, strings.NewReader("{}"))
		if path == "/bad" {
			req.Header["X-Bad"] = []string{"a\r\nb"}
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return
		}
		read(resp.Body)
		resp.Body.Close()
	}
	all := func(r io.Reader) { io.Copy(io.Discard, r) }
	some := func(r io.Reader) { r.Read(make([]byte, 3)) }
	for range 10 {
		do(context.Background(), "/ok", all)
		do(context.Background(), "/big", some)
		ctx, cancel := context.WithCancel(context.Background())
		do(ctx, "/part", func(r io.Reader) { some(r); cancel(); all(r) })
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
		do(ctx, "/part", all)
		cancel()
		do(context.Background(), "/cut", all)
		do(context.Background(), "/close", all)
		do(context.Background(), "/bad", all)
		do(context.Background(), "/once", all)
		time.Sleep(2 * time.Millisecond)
		do(context.Background(), "/ok", all) // finds the dead one pooled
	}
	tr.CloseIdleConnections()
	deadline := time.Now().Add(2 * time.Second)
	for openFDs(t) > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := openFDs(t); n > base {
		t.Errorf("%d descriptors open, %d before", n, base)
	}
}

// A context cancelled while the body's end is being read races the
// release: whichever wins, the pool never hands out a closed connection.
func TestCancelRacesRelease(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "racing") })
	tr, _ := newTransport()
	for i := range 100 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", be.URL, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			cancel()
			continue // cancelled before the answer: allowed
		}
		go cancel()
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && string(b) != "racing" {
			t.Fatalf("round %d: %q", i, b)
		}
		if _, got := call(t, tr, "GET", be.URL, ""); got != "racing" {
			t.Fatalf("round %d: next call got %q", i, got)
		}
	}
}
