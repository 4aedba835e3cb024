package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Sequential calls, whatever their shape, share one connection.
func TestKeepAliveReuse(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
	})
	tr, fb := newTransport()
	tests := []struct{ method, path, body, want string }{
		{"GET", "/a", "", "GET /a "},
		{"POST", "/b?x=1", `{"m":1}`, `POST /b?x=1 {"m":1}`},
		{"POST", "/c", "", "POST /c "},
		{"PUT", "/d", "put", "PUT /d put"},
		{"DELETE", "/e", "", "DELETE /e "},
	}
	for round := range 4 {
		for _, tt := range tests {
			resp, got := call(t, tr, tt.method, be.URL+tt.path, tt.body)
			if resp.StatusCode != 200 || got != tt.want {
				t.Fatalf("round %d %s %s: %d %q, want 200 %q", round, tt.method, tt.path, resp.StatusCode, got, tt.want)
			}
		}
	}
	if n := be.accepted.Load(); n != 1 {
		t.Errorf("backend accepted %d connections for %d sequential calls, want 1", n, 4*len(tests))
	}
	if fb.calls.Load() != 0 {
		t.Errorf("fallback got %d calls", fb.calls.Load())
	}
	if tr.idleCount() != 1 {
		t.Errorf("idle = %d, want 1", tr.idleCount())
	}
}

// A connection the backend closed while it was idle is noticed before
// reuse: the next call still succeeds, on a new connection.
func TestBackendClosedIdle(t *testing.T) {
	tests := []struct {
		name  string
		start func(t *testing.T) (url string, accepted func() int64)
	}{
		{"server IdleTimeout", func(t *testing.T) (string, func() int64) {
			be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
			var n atomicCounter
			be.Config.IdleTimeout = 30 * time.Millisecond
			be.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					n.add()
				}
			}
			be.Start()
			t.Cleanup(be.Close)
			return be.URL, n.get
		}},
		{"raw: one answer then close, no Connection: close", func(t *testing.T) (string, func() int64) {
			s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(br) != nil {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			})
			return s.URL(), s.accepted.Load
		}},
		{"raw: one answer then reset", func(t *testing.T) (string, func() int64) {
			s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(br) != nil {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					time.Sleep(5 * time.Millisecond)
					c.(*net.TCPConn).SetLinger(0)
				}
			})
			return s.URL(), s.accepted.Load
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, accepted := tt.start(t)
			tr, _ := newTransport()
			for i := range 3 {
				resp, got := call(t, tr, "POST", u, "x")
				if resp.StatusCode != 200 || got != "ok" {
					t.Fatalf("call %d: %d %q", i, resp.StatusCode, got)
				}
				time.Sleep(60 * time.Millisecond) // the backend closes meanwhile
			}
			if n := accepted(); n != 3 {
				t.Errorf("accepted %d connections, want 3 (one per call)", n)
			}
		})
	}
}

type atomicCounter struct {
	mu sync.Mutex
	n  int64
}

func (a *atomicCounter) add() { a.mu.Lock(); a.n++; a.mu.Unlock() }
func (a *atomicCounter) get() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// Connection: close from either side keeps the connection out of the pool.
func TestConnectionCloseNotPooled(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		req     func(r *http.Request)
	}{
		{"response Connection: close", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "ok")
		}, func(*http.Request) {}},
		{"request Close", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
			func(r *http.Request) { r.Close = true }},
		{"request Connection: close header", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
			func(r *http.Request) { r.Header.Set("Connection", "keep-alive, Close") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := newBackend(t, tt.handler)
			tr, _ := newTransport()
			for range 2 {
				req, _ := http.NewRequest("GET", be.URL, nil)
				tt.req(req)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
					t.Fatalf("body %q", b)
				}
				resp.Body.Close()
				if n := tr.idleCount(); n != 0 {
					t.Fatalf("idle = %d, want 0", n)
				}
			}
			if n := be.accepted.Load(); n != 2 {
				t.Errorf("accepted %d, want 2", n)
			}
			eventually(t, "the backend to see both connections closed", func() bool { return be.closed.Load() == 2 })
		})
	}
}

// Bodies delimited by the connection's close, chunked bodies with
// trailers, and answers with bytes past their end.
func TestResponseFraming(t *testing.T) {
	tests := []struct {
		name     string
		answer   string
		body     string
		trailer  http.Header
		pooled   bool
		accepted int64 // after two calls
	}{
		{"HTTP/1.0 close-delimited", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello, world", "hello, world", nil, false, 2},
		{"HTTP/1.1 no length: close-delimited", "HTTP/1.1 200 OK\r\n\r\nhello", "hello", nil, false, 2},
		{"HTTP/1.0 keep-alive with length", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello", "hello", nil, true, 1},
		{"chunked with trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Usage\r\n\r\n" +
			"5\r\nhello\r\n7\r\n, world\r\n0\r\nX-Usage: 42\r\n\r\n", "hello, world", http.Header{"X-Usage": {"42"}}, true, 1},
		{"bytes past Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloGARBAGE", "hello", nil, false, 2},
		{"bytes past the last chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nX", "hello", nil, false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
				for s.readRequest(br) != nil {
					io.WriteString(c, tt.answer)
					if !tt.pooled && !strings.Contains(tt.name, "past") {
						return // close-delimited: the close ends the body
					}
				}
			})
			tr, _ := newTransport()
			for i := range 2 {
				resp, got := call(t, tr, "GET", s.URL(), "")
				if got != tt.body {
					t.Fatalf("call %d: body %q, want %q", i, got, tt.body)
				}
				for k, v := range tt.trailer {
					if g := resp.Trailer.Get(k); g != v[0] {
						t.Errorf("trailer %s = %q, want %q", k, g, v[0])
					}
				}
				if n := tr.idleCount(); (n == 1) != tt.pooled {
					t.Errorf("call %d: idle = %d, pooled want %v", i, n, tt.pooled)
				}
			}
			if n := s.accepted.Load(); n != tt.accepted {
				t.Errorf("accepted %d, want %d", n, tt.accepted)
			}
		})
	}
}

// A body read to its length is back in the pool even when the reader never
// asked for more; one closed before its end is closed, not pooled.
func TestBodyEndAndClose(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			io.WriteString(w, big)
			return
		}
		io.WriteString(w, "0123456789")
	})
	tr, _ := newTransport()
	get := func(path string) *http.Response {
		req, _ := http.NewRequest("GET", be.URL+path, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	// Exactly its Content-Length with io.ReadFull, then Close.
	resp := get("/small")
	buf := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "0123456789" {
		t.Fatalf("ReadFull: %q %v", buf, err)
	}
	resp.Body.Close()
	if tr.idleCount() != 1 {
		t.Fatalf("a body read to its length was not pooled")
	}
	// Read after the release: EOF, and the pooled connection is untouched.
	if n, err := resp.Body.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("Read after EOF and Close = %d, %v; want 0, EOF", n, err)
	}
	if _, got := call(t, tr, "GET", be.URL+"/small", ""); got != "0123456789" {
		t.Fatalf("reused: %q", got)
	}

	// Close before EOF: not pooled, and the backend sees it closed.
	resp = get("/big")
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp.Body.Close() // twice is harmless
	if n, err := resp.Body.Read(buf); n != 0 || !errors.Is(err, ErrBodyClosed) {
		t.Errorf("Read after Close = %d, %v; want 0, ErrBodyClosed", n, err)
	}
	if tr.idleCount() != 0 {
		t.Fatalf("a body closed early was pooled")
	}
	eventually(t, "the backend to see the early-closed connection closed", func() bool { return be.closed.Load() == 1 })
	if _, got := call(t, tr, "GET", be.URL+"/small", ""); got != "0123456789" {
		t.Fatalf("after early close: %q", got)
	}
	if n := be.accepted.Load(); n != 2 {
		t.Errorf("accepted %d, want 2", n)
	}
}

// Answers without a body leave the connection pooled at once.
func TestNoBodyAnswers(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/empty":
			w.Header().Set("Content-Length", "0")
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello") // dropped by the server for HEAD
		}
	})
	tr, _ := newTransport()
	tests := []struct {
		method, path string
		status       int
	}{
		{"HEAD", "/", 200},
		{"GET", "/204", 204},
		{"GET", "/304", 304},
		{"POST", "/empty", 200},
	}
	for _, tt := range tests {
		for range 2 {
			req, _ := http.NewRequest(tt.method, be.URL+tt.path, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || resp.Body != http.NoBody {
				t.Fatalf("%s %s: %d body %T", tt.method, tt.path, resp.StatusCode, resp.Body)
			}
			if tr.idleCount() != 1 {
				t.Fatalf("%s %s: idle = %d before Close, want 1", tt.method, tt.path, tr.idleCount())
			}
			resp.Body.Close()
		}
	}
	if n := be.accepted.Load(); n != 1 {
		t.Errorf("accepted %d, want 1", n)
	}
}

// Informational answers before the real one are skipped; an endless run of
// them is refused.
func TestInformationalAnswers(t *testing.T) {
	tests := []struct {
		name, answer, body, err string
	}{
		{"100 then 200", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", ""},
		{"103 with Link then 200", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", ""},
		{"too many", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 20), "", "too many 1xx"},
		{"101 unasked", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", "", "101"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
				for s.readRequest(br) != nil {
					io.WriteString(c, tt.answer)
				}
			})
			tr, _ := newTransport()
			req, _ := http.NewRequest("POST", s.URL(), strings.NewReader("q"))
			resp, err := tr.RoundTrip(req)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				if tr.idleCount() != 0 {
					t.Error("pooled after a refused answer")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != tt.body {
				t.Fatalf("%d %q", resp.StatusCode, b)
			}
			if tr.idleCount() != 1 {
				t.Error("not pooled")
			}
		})
	}
}

// A cancelled or expired context ends the call promptly with the
// context's error, and the connection is not reused.
func TestContextEnds(t *testing.T) {
	release := make(chan struct{})
	defer close(release) // before the backend's Close, which waits for its handlers
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // so that the server notices the client's close
		switch r.URL.Path {
		case "/hang":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/part":
			io.WriteString(w, "part;")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		default:
			io.WriteString(w, "ok")
		}
	})
	tests := []struct {
		name   string
		path   string
		ctx    func() (context.Context, context.CancelFunc)
		cancel time.Duration // after this long (0: the context's deadline)
		inBody bool
		want   error
	}{
		{"cancel waiting for headers", "/hang", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			30 * time.Millisecond, false, context.Canceled},
		{"deadline waiting for headers", "/hang", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 30*time.Millisecond)
		}, 0, false, context.DeadlineExceeded},
		{"cancel mid-body", "/part", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			30 * time.Millisecond, true, context.Canceled},
		{"deadline mid-body", "/part", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 30*time.Millisecond)
		}, 0, true, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, _ := newTransport()
			call(t, tr, "GET", be.URL+"/warm", "") // a pooled connection to use
			closedBefore := be.closed.Load()
			ctx, cancel := tt.ctx()
			defer cancel()
			if tt.cancel > 0 {
				time.AfterFunc(tt.cancel, cancel)
			}
			start := time.Now()
			req, _ := http.NewRequestWithContext(ctx, "POST", be.URL+tt.path, strings.NewReader("{}"))
			resp, err := tr.RoundTrip(req)
			if tt.inBody {
				if err != nil {
					t.Fatal(err)
				}
				b := make([]byte, 64)
				n, err := resp.Body.Read(b)
				if string(b[:n]) != "part;" || err != nil {
					t.Fatalf("first read %q %v", b[:n], err)
				}
				_, err = io.ReadAll(resp.Body)
				if !errors.Is(err, tt.want) {
					t.Fatalf("body error %v, want %v", err, tt.want)
				}
				if _, err2 := resp.Body.Read(b); !errors.Is(err2, tt.want) {
					t.Errorf("second Read after the error: %v, want %v", err2, tt.want)
				}
				resp.Body.Close()
			} else if !errors.Is(err, tt.want) {
				t.Fatalf("RoundTrip error %v, want %v", err, tt.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v to notice", d)
			}
			if tr.idleCount() != 0 {
				t.Error("the connection was pooled")
			}
			eventually(t, "the backend to see the connection closed", func() bool { return be.closed.Load() == closedBefore+1 })
			// The transport still works.
			if _, got := call(t, tr, "GET", be.URL+"/after", ""); got != "ok" {
				t.Fatalf("after: %q", got)
			}
		})
	}
}

// A context cancelled after the body's end changes nothing: Read keeps
// answering EOF and the connection stays pooled.
func TestCancelAfterEOF(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "done") })
	tr, _ := newTransport()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", be.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "done" {
		t.Fatalf("%q %v", b, err)
	}
	cancel()
	time.Sleep(10 * time.Millisecond)
	if n, err := resp.Body.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Errorf("Read after cancel = %d, %v; want EOF", n, err)
	}
	resp.Body.Close()
	if tr.idleCount() != 1 {
		t.Fatal("not pooled")
	}
	call(t, tr, "GET", be.URL, "")
	if be.accepted.Load() != 1 || be.closed.Load() != 0 {
		t.Errorf("accepted %d closed %d, want 1 0", be.accepted.Load(), be.closed.Load())
	}
}

// A TLS backend that also offers HTTP/2 is spoken to in HTTP/1.1, with the
// CA from TLSConfig, over one kept-alive connection.
func TestTLSBackend(t *testing.T) {
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %v", r.Proto, r.TLS != nil)
	}))
	be.EnableHTTP2 = true
	be.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}} // h2 preferred
	var accepted atomicCounter
	be.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.add()
		}
	}
	be.StartTLS()
	defer be.Close()
	tr, _ := newTransport()
	tr.TLSConfig = &tls.Config{RootCAs: be.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	for range 3 {
		resp, got := call(t, tr, "POST", be.URL+"/v1", "{}")
		if got != "HTTP/1.1 true" {
			t.Fatalf("backend saw %q", got)
		}
		if resp.TLS == nil || resp.TLS.NegotiatedProtocol != "http/1.1" {
			t.Fatalf("resp.TLS = %+v", resp.TLS)
		}
	}
	if accepted.get() != 1 {
		t.Errorf("accepted %d, want 1", accepted.get())
	}
	// Without the CA the handshake fails, and nothing is pooled.
	bare, _ := newTransport()
	req, _ := http.NewRequest("GET", be.URL, nil)
	if _, err := bare.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("unknown CA: err = %v", err)
	}
}

// What the transport does not speak goes to Fallback; the backend sees
// nothing of it.
func TestFallback(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	proxyURL, _ := url.Parse("http://proxy.invalid:3128")
	tests := []struct {
		name  string
		proxy func(*http.Request) (*url.URL, error)
		req   func() *http.Request
	}{
		{"proxy from Proxy", func(*http.Request) (*url.URL, error) { return proxyURL, nil }, func() *http.Request {
			r, _ := http.NewRequest("GET", be.URL, nil)
			return r
		}},
		{"Proxy error", func(*http.Request) (*url.URL, error) { return nil, errors.New("bad env") }, func() *http.Request {
			r, _ := http.NewRequest("GET", be.URL, nil)
			return r
		}},
		{"unknown length (-1)", nil, func() *http.Request {
			r, _ := http.NewRequest("POST", be.URL, io.NopCloser(strings.NewReader("x")))
			r.ContentLength = -1
			return r
		}},
		{"length 0 with a body", nil, func() *http.Request {
			r, _ := http.NewRequest("POST", be.URL, io.NopCloser(strings.NewReader("x")))
			return r
		}},
		{"chunked asked", nil, func() *http.Request {
			r, _ := http.NewRequest("POST", be.URL, strings.NewReader("x"))
			r.TransferEncoding = []string{"chunked"}
			return r
		}},
		{"request trailer", nil, func() *http.Request {
			r, _ := http.NewRequest("POST", be.URL, strings.NewReader("x"))
			r.Trailer = http.Header{"X-T": nil}
			return r
		}},
		{"Expect", nil, func() *http.Request {
			r, _ := http.NewRequest("POST", be.URL, strings.NewReader("x"))
			r.Header.Set("Expect", "100-continue")
			return r
		}},
		{"Upgrade", nil, func() *http.Request {
			r, _ := http.NewRequest("GET", be.URL, nil)
			r.Header.Set("Upgrade", "websocket")
			return r
		}},
		{"user info", nil, func() *http.Request {
			r, _ := http.NewRequest("GET", strings.Replace(be.URL, "//", "//u:p@", 1), nil)
			return r
		}},
		{"other scheme", nil, func() *http.Request {
			r, _ := http.NewRequest("GET", "ftp://127.0.0.1/x", nil)
			return r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, fb := newTransport()
			tr.Proxy = tt.proxy
			resp, err := tr.RoundTrip(tt.req())
			if err != nil || resp.StatusCode != 299 || fb.calls.Load() != 1 {
				t.Fatalf("resp %v err %v fallback calls %d", resp, err, fb.calls.Load())
			}
		})
	}
	if n := be.accepted.Load(); n != 0 {
		t.Errorf("backend accepted %d connections", n)
	}
	// No fallback: an error, and the body closed.
	tr := &Transport{}
	body := &closeTracker{Reader: strings.NewReader("x")}
	r, _ := http.NewRequest("POST", be.URL, body)
	r.ContentLength = -1
	if _, err := tr.RoundTrip(r); err == nil || !body.closed {
		t.Errorf("no fallback: err %v, body closed %v", err, body.closed)
	}
}

type closeTracker struct {
	io.Reader
	closed bool
	mu     sync.Mutex
}

func (c *closeTracker) Close() error { c.mu.Lock(); c.closed = true; c.mu.Unlock(); return nil }
