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
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Transport is an HTTP/1.1 RoundTripper with a keep-alive pool. The zero
// value is not usable; use New.
type Transport struct {
	// Fallback serves what this transport does not (see the package doc).
	Fallback http.RoundTripper
	// Proxy returns the proxy for a request, as http.Transport.Proxy; a
	// request with a proxy goes to Fallback. Nil: no proxy.
	Proxy func(*http.Request) (*url.URL, error)
	// TLSConfig is cloned per connection (ServerName set from the host).
	TLSConfig *tls.Config
	// DialTimeout bounds the TCP connect; TLSHandshakeTimeout the handshake.
	DialTimeout, TLSHandshakeTimeout time.Duration
	// MaxIdlePerHost caps the idle connections kept per host.
	MaxIdlePerHost int
	// IdleTimeout: an idle connection older than this is closed, not reused.
	IdleTimeout time.Duration

	dialer net.Dialer
	mu     sync.Mutex
	idle   map[string][]*conn // per scheme://host:port, most recent last
}

// New returns a Transport with the gateway's defaults: 10 s connect and TLS
// handshake, 512 idle connections per host kept for 90 s.
func New(fallback http.RoundTripper) *Transport {
	return &Transport{Fallback: fallback, DialTimeout: 10 * time.Second, TLSHandshakeTimeout: 10 * time.Second,
		MaxIdlePerHost: 512, IdleTimeout: 90 * time.Second,
		dialer: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}, idle: map[string][]*conn{}}
}

// conn is one backend connection.
type conn struct {
	key   string
	nc    net.Conn // what is read and written (TLS or TCP)
	raw   net.Conn // the TCP connection under it
	br    *bufio.Reader
	bw    *bufio.Writer
	since time.Time // idle since
	used  bool      // served a request before
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.handles(req) {
		if t.Fallback == nil {
			return nil, errors.New("upstream: request not supported and no fallback transport")
		}
		return t.Fallback.RoundTrip(req)
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	key := req.URL.Scheme + "://" + canonicalAddr(req.URL)
	for try := 0; ; try++ {
		c, err := t.get(ctx, key, req.URL)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, retry, err := t.exchange(ctx, c, req)
		if err == nil {
			return resp, nil
		}
		if retry && try == 0 && c.used && rewind(req) {
			continue // a reused connection the backend had closed: nothing reached it
		}
		closeBody(req)
		return nil, err
	}
}

// handles reports whether req is one this transport serves itself.
func (t *Transport) handles(req *http.Request) bool {
	if req.URL == nil || (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody && req.ContentLength <= 0 {
		return false // unknown length: chunked upload
	}
	if _, ok := req.Header["Expect"]; ok {
		return false
	}
	if _, ok := req.Header["Upgrade"]; ok {
		return false
	}
	if t.Proxy != nil {
		if u, err := t.Proxy(req); err != nil || u != nil {
			return false
		}
	}
	return true
}

func canonicalAddr(u *url.URL) string {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(host, port)
}

// get returns an idle connection to key that is still open, or a new one.
func (t *Transport) get(ctx context.Context, key string, u *url.URL) (*conn, error) {
	now := time.Now()
	for {
		t.mu.Lock()
		list := t.idle[key]
		if len(list) == 0 {
			t.mu.Unlock()
			break
		}
		c := list[len(list)-1]
		list[len(list)-1] = nil
		t.idle[key] = list[:len(list)-1]
		t.mu.Unlock()
		if now.Sub(c.since) < t.IdleTimeout && c.br.Buffered() == 0 && alive(c.raw) {
			return c, nil
		}
		_ = c.nc.Close()
	}
	return t.dial(ctx, key, u)
}

// alive reports whether an idle connection is still open: one non-blocking
// read, which must find nothing to read (the backend closed it: EOF; or sent
// something unasked: not reusable either).
func alive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, err := syscall.Read(int(fd), b[:])
		ok = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true // never wait
	})
	return err == nil && ok
}

func (t *Transport) dial(ctx context.Context, key string, u *url.URL) (*conn, error) {
	addr := canonicalAddr(u)
	dctx := ctx
	if t.DialTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, t.DialTimeout)
		defer cancel()
	}
	raw, err := t.dialer.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	nc := raw
	if u.Scheme == "https" {
		cfg := &tls.Config{}
		if t.TLSConfig != nil {
			cfg = t.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(raw, cfg)
		hctx := ctx
		if t.TLSHandshakeTimeout > 0 {
			var cancel context.CancelFunc
			hctx, cancel = context.WithTimeout(ctx, t.TLSHandshakeTimeout)
			defer cancel()
		}
		if err := tc.HandshakeContext(hctx); err != nil {
			_ = raw.Close()
			return nil, err
		}
		nc = tc
	}
	return &conn{key: key, nc: nc, raw: raw, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 8<<10)}, nil
}

// put returns c to the pool.
func (t *Transport) put(c *conn) {
	c.since = time.Now()
	c.used = true
	t.mu.Lock()
	list := t.idle[c.key]
	// Close those idle too long (oldest first) and those over the cap.
	drop := 0
	for drop < len(list) && (c.since.Sub(list[drop].since) >= t.IdleTimeout || len(list)-drop >= t.MaxIdlePerHost) {
		drop++
	}
	old := append([]*conn(nil), list[:drop]...)
	if drop > 0 {
		n := copy(list, list[drop:])
		clear(list[n:])
		list = list[:n]
	}
	t.idle[c.key] = append(list, c)
	t.mu.Unlock()
	for _, o := range old {
		_ = o.nc.Close()
	}
}

// CloseIdleConnections closes the pooled connections (and Fallback's).
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	all := t.idle
	t.idle = map[string][]*conn{}
	t.mu.Unlock()
	for _, list := range all {
		for _, c := range list {
			_ = c.nc.Close()
		}
	}
	if ci, ok := t.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// exchange writes req on c and reads the response headers. retry reports a
// failure on which nothing can have reached the backend.
func (t *Transport) exchange(ctx context.Context, c *conn, req *http.Request) (resp *http.Response, retry bool, err error) {
	// A cancelled context closes the connection, which ends a blocked
	// write or read; the error is then the context's.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.Close() })
	fail := func(e error, retry bool) (*http.Response, bool, error) {
		stop()
		_ = c.nc.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, false, cerr
		}
		return nil, retry, e
	}
	if err := writeHead(c.bw, req); err != nil {
		return fail(err, false)
	}
	head := c.bw.Buffered()
	var sent int64
	if req.Body != nil && req.Body != http.NoBody {
		n, err := io.Copy(c.bw, req.Body)
		if err != nil {
			return fail(fmt.Errorf("writing request body: %w", err), false)
		}
		sent = n
	}
	// One write when the request fits the buffer: if it fails on a reused
	// connection (the backend had closed it), nothing reached the backend.
	single := int64(c.bw.Buffered()) == int64(head)+sent
	if err := c.bw.Flush(); err != nil {
		return fail(err, single)
	}
	for {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			// Not retried: the backend may have read the request (as
			// net/http's Transport, which retries a POST only when nothing
			// was written).
			return fail(err, false)
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				return fail(errors.New("upstream: unexpected 101 Switching Protocols"), false)
			}
			continue // an informational answer: the real one follows
		}
		break
	}
	reuse := !resp.Close && !req.Close
	if resp.Body == http.NoBody || resp.Body == nil {
		if stop() && reuse {
			t.put(c)
		} else {
			_ = c.nc.Close()
		}
		resp.Body = http.NoBody
		return resp, false, nil
	}
	resp.Body = &body{rc: resp.Body, c: c, t: t, stop: stop, ctx: ctx, reuse: reuse}
	return resp, false, nil
}

// writeHead writes the request line and headers.
func writeHead(w *bufio.Writer, req *http.Request) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !validValue(host) || !validToken(method) {
		return errors.New("upstream: invalid host or method")
	}
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(req.URL.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	for k, vs := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Trailer", "Te":
			continue // ours to write
		}
		if !validToken(k) {
			return fmt.Errorf("upstream: invalid header name %q", k)
		}
		for _, v := range vs {
			if !validValue(v) {
				return fmt.Errorf("upstream: invalid value for header %s", k)
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(strings.TrimSpace(v))
			w.WriteString("\r\n")
		}
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		w.WriteString("User-Agent: Go-http-client/1.1\r\n")
	}
	if req.Close {
		w.WriteString("Connection: close\r\n")
	}
	if req.Body != nil && req.Body != http.NoBody || req.ContentLength > 0 ||
		req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.FormatInt(max(req.ContentLength, 0), 10))
		w.WriteString("\r\n")
	}
	_, err := w.WriteString("\r\n")
	return err
}

// validToken reports a header name or method: visible ASCII, no separators.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// validValue reports a header value without control characters but tab.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// body returns its connection to the pool at EOF.
type body struct {
	rc    io.ReadCloser
	c     *conn
	t     *Transport
	stop  func() bool
	ctx   context.Context
	reuse bool
	done  bool // the connection was put back or closed
	eof   bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.done {
		if b.eof {
			return 0, io.EOF
		}
		return 0, errors.New("upstream: read on closed body")
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
		b.release(b.reuse)
		return n, io.EOF
	}
	if err != nil {
		b.release(false)
		if cerr := b.ctx.Err(); cerr != nil {
			return n, cerr
		}
	}
	return n, err
}

func (b *body) Close() error {
	if !b.done {
		b.release(false) // not read to the end: the rest is unread on the wire
	}
	return nil
}

func (b *body) release(reuse bool) {
	b.done = true
	if b.stop() && reuse && b.c.br.Buffered() == 0 {
		b.t.put(b.c)
		return
	}
	_ = b.c.nc.Close()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// rewind makes req's body readable again for a second attempt.
func rewind(req *http.Request) bool {
	if req.Body == nil || req.Body == http.NoBody {
		return true
	}
	if req.GetBody == nil {
		return false
	}
	b, err := req.GetBody()
	if err != nil {
		return false
	}
	req.Body = b
	return true
}
