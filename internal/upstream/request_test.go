package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A request that cannot be written correctly is refused before any
// connection is made, as net/http refuses it.
func TestInvalidRequests(t *testing.T) {
	serve := func(s *rawServer, c net.Conn, br *bufio.Reader) {
		for s.readRequest(br) != nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	}
	ours, theirs := newRawServer(t, serve), newRawServer(t, serve)
	tests := []struct {
		name string
		mod  func(r *http.Request)
		// net/http cuts a Host at a space or control character and
		// sends the request; this transport refuses it.
		stdSends bool
	}{
		{"LF in a value", func(r *http.Request) { r.Header["X-A"] = []string{"a\nInjected: 1"} }, false},
		{"CR LF in a value", func(r *http.Request) { r.Header["X-A"] = []string{"a\r\n\r\nGET / HTTP/1.1"} }, false},
		{"NUL in a value", func(r *http.Request) { r.Header["X-A"] = []string{"a\x00"} }, false},
		{"second value bad", func(r *http.Request) { r.Header["X-A"] = []string{"fine", "bad\r"} }, false},
		{"space in a name", func(r *http.Request) { r.Header["X A"] = []string{"1"} }, false},
		{"colon in a name", func(r *http.Request) { r.Header["X:A"] = []string{"1"} }, false},
		{"empty name", func(r *http.Request) { r.Header[""] = []string{"1"} }, false},
		{"newline in a name", func(r *http.Request) { r.Header["X\r\nA"] = []string{"1"} }, false},
		{"method with space", func(r *http.Request) { r.Method = "GET /x" }, false},
		{"Host with CR LF", func(r *http.Request) { r.Host = "a\r\nX: y" }, true},
		{"Host with space", func(r *http.Request) { r.Host = "a b" }, true},
		{"query with CR LF", func(r *http.Request) { r.URL.RawQuery = "a=1\r\nX: y" }, false},
		{"length with no body", func(r *http.Request) { r.Body, r.ContentLength = nil, 5 }, false},
	}
	std := tuned()
	defer std.CloseIdleConnections()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", ours.URL()+"/p", nil)
			tt.mod(req)
			if _, err := New(nil).RoundTrip(req); err == nil {
				t.Error("no error")
			}
			req, _ = http.NewRequest("GET", theirs.URL()+"/p", nil)
			tt.mod(req)
			if resp, err := std.RoundTrip(req); (err == nil) != tt.stdSends {
				t.Errorf("net/http: %v", err)
			} else if err == nil {
				resp.Body.Close()
			}
		})
	}
	if n, m := ours.accepted.Load(), ours.got.Load(); n != 0 || m != 0 {
		t.Errorf("the backend accepted %d connections, read %d requests' worth", n, m)
	}
}

// The head written matches what net/http's Transport writes for the same
// request (header for header), with the transport's own fields written once.
func TestHeadMatchesNetHTTP(t *testing.T) {
	heads := make(chan *http.Request, 2)
	s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
		for {
			req := s.readRequest(br)
			if req == nil {
				return
			}
			heads <- req
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	tests := []struct {
		name string
		req  func() *http.Request
		want func(t *testing.T, r *http.Request)
		// net/http writes non-canonical keys as they are: a second
		// Content-Length (which the server refuses) or User-Agent.
		ownOnly bool
	}{
		{"POST, empty body: Content-Length 0", func() *http.Request {
			r, _ := http.NewRequest("POST", s.URL()+"/v1/chat", nil)
			return r
		}, func(t *testing.T, r *http.Request) {
			if r.ContentLength != 0 || r.Header.Get("Content-Length") != "0" {
				t.Errorf("Content-Length %q", r.Header.Get("Content-Length"))
			}
		}, false},
		{"GET: no Content-Length, default User-Agent", func() *http.Request {
			r, _ := http.NewRequest("GET", s.URL()+"/models?api-version=1", nil)
			return r
		}, func(t *testing.T, r *http.Request) {
			if _, ok := r.Header["Content-Length"]; ok {
				t.Error("Content-Length sent on a GET")
			}
			if r.UserAgent() != "Go-http-client/1.1" || r.URL.RawQuery != "api-version=1" {
				t.Errorf("UA %q query %q", r.UserAgent(), r.URL.RawQuery)
			}
		}, false},
		{"multiple values, spaces trimmed, NBSP kept", func() *http.Request {
			r, _ := http.NewRequest("POST", s.URL(), strings.NewReader(`{"a":1}`))
			r.Header["X-Multi"] = []string{"one", " two\t", "three"}
			r.Header["X-Nbsp"] = []string{"v\u00a0"}
			r.Header["X-Empty"] = []string{""}
			r.Header.Set("User-Agent", "  gw/1 ")
			return r
		}, func(t *testing.T, r *http.Request) {
			if got := r.Header["X-Multi"]; !reflect.DeepEqual(got, []string{"one", "two", "three"}) {
				t.Errorf("X-Multi %q", got)
			}
			if r.Header.Get("X-Nbsp") != "v\u00a0" {
				t.Errorf("X-Nbsp %q", r.Header.Get("X-Nbsp"))
			}
			if r.UserAgent() != "gw/1" {
				t.Errorf("UA %q", r.UserAgent())
			}
		}, false},
		{"empty User-Agent: none sent", func() *http.Request {
			r, _ := http.NewRequest("GET", s.URL(), nil)
			r.Header["User-Agent"] = []string{""}
			return r
		}, func(t *testing.T, r *http.Request) {
			if _, ok := r.Header["User-Agent"]; ok {
				t.Errorf("UA %q", r.Header["User-Agent"])
			}
		}, false},
		{"non-canonical keys of the transport's own fields", func() *http.Request {
			r, _ := http.NewRequest("POST", s.URL(), strings.NewReader("abc"))
			r.Header["content-length"] = []string{"999"}
			r.Header["host"] = []string{"evil.example"}
			r.Header["transfer-encoding"] = []string{"chunked"}
			r.Header["user-agent"] = []string{"lower/1"}
			r.Header["x-lower"] = []string{"kept"}
			return r
		}, func(t *testing.T, r *http.Request) {
			if r.ContentLength != 3 || len(r.Header["Content-Length"]) != 1 || r.Host == "evil.example" || len(r.TransferEncoding) != 0 {
				t.Errorf("CL %d %q host %q TE %q", r.ContentLength, r.Header["Content-Length"], r.Host, r.TransferEncoding)
			}
			if !reflect.DeepEqual(r.Header["User-Agent"], []string{"lower/1"}) || r.Header.Get("X-Lower") != "kept" {
				t.Errorf("UA %q x-lower %q", r.Header["User-Agent"], r.Header.Get("X-Lower"))
			}
		}, true},
		{"Host override", func() *http.Request {
			r, _ := http.NewRequest("POST", s.URL()+"/openai/v1/responses", strings.NewReader("{}"))
			r.Host = "my-resource.openai.azure.com"
			return r
		}, func(t *testing.T, r *http.Request) {
			if r.Host != "my-resource.openai.azure.com" || r.URL.Path != "/openai/v1/responses" {
				t.Errorf("host %q path %q", r.Host, r.URL.Path)
			}
		}, false},
	}
	std := tuned()
	defer std.CloseIdleConnections()
	tr, _ := newTransport()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [2]*http.Request
			rts := []http.RoundTripper{tr, std}
			if tt.ownOnly {
				rts = rts[:1]
			}
			for i, rt := range rts {
				resp, err := rt.RoundTrip(tt.req())
				if err != nil {
					t.Fatalf("%T: %v", rt, err)
				}
				resp.Body.Close()
				got[i] = <-heads
			}
			tt.want(t, got[0])
			if tt.ownOnly {
				return
			}
			ours, theirs := got[0], got[1]
			if ours.Method != theirs.Method || ours.Host != theirs.Host || ours.RequestURI != theirs.RequestURI ||
				ours.ContentLength != theirs.ContentLength {
				t.Errorf("ours %s %s %s %d, net/http %s %s %s %d", ours.Method, ours.Host, ours.RequestURI, ours.ContentLength,
					theirs.Method, theirs.Host, theirs.RequestURI, theirs.ContentLength)
			}
			delete(theirs.Header, "Accept-Encoding") // net/http's own gzip offer
			if !reflect.DeepEqual(ours.Header, theirs.Header) {
				t.Errorf("headers differ:\nours     %q\nnet/http %q", ours.Header, theirs.Header)
			}
		})
	}
}

// The request body must have ContentLength bytes: a shorter or longer one
// is refused, and no byte past ContentLength is sent. RoundTrip closes the
// body, on success too.
func TestRequestBody(t *testing.T) {
	bodies := make(chan string, 8)
	s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
		for {
			req := s.readRequest(br)
			if req == nil {
				return
			}
			b, _ := io.ReadAll(req.Body)
			bodies <- string(b)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	type reader = func(s string) io.Reader
	plain := func(s string) io.Reader { return struct{ io.Reader }{strings.NewReader(s)} } // no WriterTo
	writerTo := func(s string) io.Reader { return bytes.NewReader([]byte(s)) }
	big := strings.Repeat("b", 100<<10)
	tests := []struct {
		name   string
		body   string
		length int64
		rd     reader
		ok     bool
	}{
		{"exact, WriterTo", "hello", 5, writerTo, true},
		{"exact, plain reader", "hello", 5, plain, true},
		{"exact, large, WriterTo", big, int64(len(big)), writerTo, true},
		{"exact, large, plain reader", big, int64(len(big)), plain, true},
		{"longer, WriterTo", "hello world", 5, writerTo, false},
		{"longer, plain reader", "hello world", 5, plain, false},
		{"shorter, WriterTo", "hi", 5, writerTo, false},
		{"shorter, plain reader", "hi", 5, plain, false},
	}
	tr, _ := newTransport()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := &closeTracker{Reader: tt.rd(tt.body)}
			req, _ := http.NewRequest("POST", s.URL(), body)
			req.ContentLength = tt.length
			resp, err := tr.RoundTrip(req)
			if !body.closed {
				t.Error("request body not closed")
			}
			if !tt.ok {
				if !errors.Is(err, ErrBodyLength) {
					t.Fatalf("err = %v, want ErrBodyLength", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if got := <-bodies; got != tt.body {
				t.Errorf("backend got %d bytes, want %d", len(got), len(tt.body))
			}
		})
	}
	// The refused ones sent nothing the backend took for a request.
	if len(bodies) != 0 {
		t.Errorf("backend got %d extra requests", len(bodies))
	}
}

// A reused connection that refuses the first byte of a request (the
// backend reset it while it was idle, after the liveness check) is the one
// case sent again, on a new connection; a connection that took the request
// and then failed is not: the backend may have acted on it.
func TestRetryOnlyWhenNothingSent(t *testing.T) {
	tests := []struct {
		name     string
		reset    bool // the backend resets (else closes) after one answer
		getBody  bool
		ok       bool
		accepted int64
	}{
		{"reset, replayable body: sent again", true, true, true, 2},
		{"reset, body without GetBody: not sent again", true, false, false, 1},
		{"closed (FIN): write succeeds, read fails: not sent again", false, true, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(br) == nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				if tt.reset {
					time.Sleep(10 * time.Millisecond) // the answer is read first
					c.(*net.TCPConn).SetLinger(0)
				}
			})
			tr, _ := newTransport()
			tr.alive = func(*conn) bool { return true } // the backend closes after the check
			call(t, tr, "POST", s.URL(), "first")
			time.Sleep(20 * time.Millisecond) // the close reaches us
			var body io.Reader = strings.NewReader("second")
			if !tt.getBody {
				body = struct{ io.Reader }{body}
			}
			req, _ := http.NewRequest("POST", s.URL(), body)
			req.ContentLength = 6
			orig := req.Body
			resp, err := tr.RoundTrip(req)
			if req.Body != orig {
				t.Error("RoundTrip changed the caller's request")
			}
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if resp.Request != req {
					t.Error("resp.Request is not the caller's request")
				}
				resp.Body.Close()
			} else if err == nil {
				t.Fatal("no error")
			}
			if n := s.accepted.Load(); n != tt.accepted {
				t.Errorf("accepted %d, want %d", n, tt.accepted)
			}
			// Only "first" (and, when sent again, "second") reached a
			// backend handler: 6 bytes each including readRequest's 1.
			want := int64(6)
			if tt.ok {
				want += 7
			}
			if got := s.got.Load(); got != want {
				t.Errorf("backend read %d, want %d", got, want)
			}
		})
	}
}

// A cut answer gives the same errors as net/http's Transport.
func TestCutAnswerMatchesNetHTTP(t *testing.T) {
	tests := []struct {
		name, answer string
		inHead       bool // the error comes from RoundTrip (else from the body)
	}{
		{"closed before headers", "", true},
		{"cut in headers", "HTTP/1.1 200 OK\r\nContent-Le", true},
		{"short Content-Length body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", false},
		{"cut chunked body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwo", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(br) != nil {
					io.WriteString(c, tt.answer)
				}
			})
			std := tuned()
			defer std.CloseIdleConnections()
			var errs [2]error
			for i, rt := range []http.RoundTripper{New(nil), std} {
				req, _ := http.NewRequest("POST", s.URL(), strings.NewReader("{}"))
				resp, err := rt.RoundTrip(req)
				if err == nil {
					if tt.inHead {
						t.Fatalf("%T: no error from RoundTrip", rt)
					}
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				} else if !tt.inHead {
					t.Fatalf("%T: RoundTrip: %v", rt, err)
				}
				errs[i] = err
			}
			if errs[0] == nil || errs[1] == nil {
				t.Fatalf("errors: ours %v, net/http %v", errs[0], errs[1])
			}
			for _, target := range []error{io.EOF, io.ErrUnexpectedEOF} {
				if errors.Is(errs[0], target) != errors.Is(errs[1], target) {
					t.Errorf("errors.Is(_, %v): ours %v (%v), net/http %v (%v)", target,
						errors.Is(errs[0], target), errs[0], errors.Is(errs[1], target), errs[1])
				}
			}
		})
	}
}

// Response headers are bounded.
func TestResponseHeaderLimit(t *testing.T) {
	s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
		if s.readRequest(br) != nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 4096)+"\r\nContent-Length: 0\r\n\r\n")
		}
	})
	tr, _ := newTransport()
	tr.MaxResponseHeaderBytes = 1024
	req, _ := http.NewRequest("GET", s.URL(), nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("err = %v, want ErrHeaderTooLarge", err)
	}
	tr.MaxResponseHeaderBytes = 8192
	req, _ = http.NewRequest("GET", s.URL(), nil)
	resp, err := tr.RoundTrip(req)
	if err != nil || len(resp.Header.Get("X-Big")) != 4096 {
		t.Fatalf("within the limit: %v", err)
	}
}

// A backend that answers and closes without reading a large body: the
// write fails, but the answer is what the caller gets, as from net/http.
// One that closes without answering gives the write's error.
func TestEarlyAnswer(t *testing.T) {
	tests := []struct {
		name   string
		answer string
		status int
	}{
		{"413 before the body is read", "HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbig!", 413},
		{"401 without Connection: close", "HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nbig!", 401},
		{"no answer", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, tt.answer)
				time.Sleep(30 * time.Millisecond) // then close with the body unread: a reset
			})
			std := tuned()
			defer std.CloseIdleConnections()
			tr, _ := newTransport()
			for _, rt := range []http.RoundTripper{tr, std} {
				req, _ := http.NewRequest("POST", s.URL(), strings.NewReader(strings.Repeat("x", 8<<20)))
				resp, err := rt.RoundTrip(req)
				if tt.status == 0 {
					if err == nil {
						t.Fatalf("%T: no error", rt)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%T: %v", rt, err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.status || string(b) != "big!" || err != nil {
					t.Errorf("%T: %d %q %v", rt, resp.StatusCode, b, err)
				}
			}
			if tr.idleCount() != 0 {
				t.Error("pooled a connection whose request was never fully sent")
			}
		})
	}
}
