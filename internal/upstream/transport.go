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
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of the zero-valued fields.
const (
	// DefaultMaxIdlePerHost is net/http's DefaultMaxIdleConnsPerHost.
	DefaultMaxIdlePerHost = 2
	// DefaultMaxResponseHeaderBytes is net/http's default too.
	DefaultMaxResponseHeaderBytes = 10 << 20
	// max1xx bounds the informational answers read before the final one.
	max1xx = 8
)

// Errors callers may test for.
var (
	// ErrBodyLength: the request body did not have ContentLength bytes.
	ErrBodyLength = errors.New("upstream: request body length differs from ContentLength")
	// ErrHeaderTooLarge: the response headers exceeded MaxResponseHeaderBytes.
	ErrHeaderTooLarge = errors.New("upstream: response headers too large")
	// ErrBodyClosed is what a response body's Read returns after Close.
	ErrBodyClosed = errors.New("upstream: read on closed response body")
)

// Transport is an HTTP/1.1 RoundTripper with a keep-alive pool. Its zero
// value is usable (no fallback, no timeouts, DefaultMaxIdlePerHost idle
// connections per host kept without an age limit); New sets the
// gateway's defaults. A Transport must not be copied after first use.
type Transport struct {
	// Fallback serves what this transport does not (see the package doc).
	Fallback http.RoundTripper
	// Proxy returns the proxy for a request, as http.Transport.Proxy; a
	// request with a proxy goes to Fallback. Nil: no proxy.
	Proxy func(*http.Request) (*url.URL, error)
	// TLSConfig is cloned per connection (ServerName set from the host,
	// ALPN set to http/1.1 only).
	TLSConfig *tls.Config
	// DialTimeout bounds the TCP connect; TLSHandshakeTimeout the
	// handshake. Zero: only the request's context bounds them.
	DialTimeout, TLSHandshakeTimeout time.Duration
	// KeepAlive is the TCP keep-alive period (zero: Go's default, 15 s;
	// negative: off).
	KeepAlive time.Duration
	// MaxIdlePerHost caps the idle connections kept per host (zero:
	// DefaultMaxIdlePerHost; negative: none kept).
	MaxIdlePerHost int
	// IdleTimeout: an idle connection older than this is closed, not
	// reused. Zero: no limit.
	IdleTimeout time.Duration
	// MaxResponseHeaderBytes bounds the response headers (informational
	// answers included). Zero: DefaultMaxResponseHeaderBytes.
	MaxResponseHeaderBytes int64

	// alive replaces isAlive in tests.
	alive func(*conn) bool

	mu    sync.Mutex
	idle  map[poolKey][]*conn // most recent last
	sweep *time.Timer         // armed while connections are idle (IdleTimeout > 0)
}

// New returns a Transport with the gateway's defaults: 10 s connect and TLS
// handshake, 30 s TCP keep-alive, 512 idle connections per host kept for
// 90 s.
func New(fallback http.RoundTripper) *Transport {
	return &Transport{Fallback: fallback, DialTimeout: 10 * time.Second, TLSHandshakeTimeout: 10 * time.Second,
		KeepAlive: 30 * time.Second, MaxIdlePerHost: 512, IdleTimeout: 90 * time.Second}
}

// conn is one backend connection. It is the reader under br (bounding the
// response headers) and the writer under bw (counting what the kernel took).
type conn struct {
	key   poolKey
	nc    net.Conn // what is read and written (TLS or TCP)
	raw   net.Conn // the TCP connection under it
	br    *bufio.Reader
	bw    *bufio.Writer
	tls   *tls.ConnectionState
	sock  *tlsSocket      // under nc when TLS
	rc    syscall.RawConn // raw, for isAlive
	probe func(fd uintptr) bool
	// closeFn closes nc, for context.AfterFunc (made once per connection).
	closeFn  func()
	probeOK  bool
	probeBuf [1]byte
	since    time.Time // idle since
	used     bool      // served a request before (it may have been closed while idle)

	written int64 // bytes of the current request the connection took
	werr    error // the connection's write error, if any
	limit   int64 // bytes left for response headers; < 0: no limit (reading a body)
	lim     limitWriter
}

func (c *conn) Write(p []byte) (int, error) {
	n, err := c.nc.Write(p)
	c.written += int64(n)
	if err != nil {
		c.werr = err
	}
	return n, err
}

func (c *conn) Read(p []byte) (int, error) {
	if c.limit < 0 {
		return c.nc.Read(p)
	}
	if c.limit == 0 {
		return 0, ErrHeaderTooLarge
	}
	if int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	n, err := c.nc.Read(p)
	c.limit -= int64(n)
	return n, err
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.handles(req) {
		if t.Fallback == nil {
			closeBody(req)
			return nil, errors.New("upstream: request not supported and no fallback transport")
		}
		return t.Fallback.RoundTrip(req)
	}
	h, err := check(req)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	key := poolKey{tls: req.URL.Scheme == "https", addr: req.URL.Host}
	if req.URL.Port() == "" {
		key.addr = canonicalAddr(req.URL)
	}
	orig := req
	for try := 0; ; try++ {
		c, err := t.get(ctx, key, req.URL, try > 0)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := t.exchange(ctx, c, req, &h)
		closeBody(req) // written (or failed): RoundTrip closes it, as net/http's does
		if err == nil {
			resp.Request = orig // not the copy a second try made
			return resp, nil
		}
		// Again, once, on a new connection, only when the reused
		// connection took not one byte of the request: nothing reached
		// the backend (it had closed the connection while idle). A
		// request that may have reached it is never sent twice.
		if try == 0 && c.used && c.written == 0 && c.werr != nil && ctx.Err() == nil {
			if r2 := rewind(req); r2 != nil {
				req = r2
				continue
			}
		}
		return nil, err
	}
}

// handles reports whether req is one this transport serves itself.
func (t *Transport) handles(req *http.Request) bool {
	if req.URL == nil || (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" || req.URL.User != nil {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody && req.ContentLength <= 0 {
		return false // unknown length: chunked upload
	}
	if len(req.TransferEncoding) > 0 || len(req.Trailer) > 0 {
		return false
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

// head is what check found out about a request, for writeHead.
type head struct {
	method, host, uri string
	ua                string // User-Agent to send ("": none)
	close             bool   // Connection: close
	length            bool   // send Content-Length
	n                 int64  // the Content-Length sent
}

// check validates req before any connection is taken: a request that could
// not be written correctly is refused with nothing sent, as net/http does.
func check(req *http.Request) (head, error) {
	h := head{method: req.Method, host: req.Host, uri: req.URL.RequestURI(), ua: "Go-http-client/1.1", close: req.Close,
		n: max(req.ContentLength, 0)}
	if h.method == "" {
		h.method = http.MethodGet
	}
	if h.host == "" {
		h.host = req.URL.Host
	}
	if !validToken(h.method) {
		return h, fmt.Errorf("upstream: invalid method %q", h.method)
	}
	if !validHost(h.host) {
		return h, fmt.Errorf("upstream: invalid host %q", h.host)
	}
	if !validHost(h.uri) { // the same alphabet: visible ASCII and above
		return h, errors.New("upstream: invalid character in request URI")
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if req.ContentLength > 0 && !hasBody {
		return h, fmt.Errorf("upstream: ContentLength=%d with no body", req.ContentLength)
	}
	h.length = hasBody || req.ContentLength > 0 ||
		h.method == http.MethodPost || h.method == http.MethodPut || h.method == http.MethodPatch
	for k, vs := range req.Header {
		if !validToken(k) {
			return h, fmt.Errorf("upstream: invalid header field name %q", k)
		}
		for _, v := range vs {
			if !validValue(v) {
				return h, fmt.Errorf("upstream: invalid header field value for %q", k)
			}
		}
		switch reserved(k) {
		case userAgent:
			h.ua = ""
			if len(vs) > 0 {
				h.ua = trim(vs[0]) // as net/http: the first value; empty: none
			}
		case connection:
			for _, v := range vs {
				if hasToken(v, "close") {
					h.close = true
				}
			}
		}
	}
	return h, nil
}

// Header fields the transport writes itself, matched in any case (a
// non-canonical key set straight into the map must not add a second
// Content-Length or Host).
const (
	plain = iota
	ours
	userAgent
	connection
)

func reserved(k string) int {
	switch len(k) {
	case 4:
		if strings.EqualFold(k, "Host") {
			return ours
		}
	case 7:
		if strings.EqualFold(k, "Trailer") {
			return ours
		}
	case 10:
		if strings.EqualFold(k, "User-Agent") {
			return userAgent
		}
		if strings.EqualFold(k, "Connection") {
			return connection
		}
	case 14:
		if strings.EqualFold(k, "Content-Length") {
			return ours
		}
	case 17:
		if strings.EqualFold(k, "Transfer-Encoding") {
			return ours
		}
	}
	return plain
}

func hasToken(v, token string) bool {
	for v != "" {
		var f string
		f, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(trim(f), token) {
			return true
		}
	}
	return false
}

// trim removes the spaces and tabs around a header value (ASCII only, as
// net/http: a value ending in a non-breaking space keeps it).
func trim(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// poolKey is a pool: the scheme and host:port (as in the URL when it names
// the port, so that building the key costs nothing).
type poolKey struct {
	tls  bool
	addr string
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

// get returns an idle connection to key that is still open, or (always
// when fresh) a new one.
func (t *Transport) get(ctx context.Context, key poolKey, u *url.URL, fresh bool) (*conn, error) {
	if !fresh {
		alive := t.alive
		if alive == nil {
			alive = isAlive
		}
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
			if !t.expired(c, now) && c.br.Buffered() == 0 && alive(c) && !tlsBuffered(c) {
				return c, nil
			}
			_ = c.nc.Close()
		}
	}
	return t.dial(ctx, key, u)
}

func (t *Transport) expired(c *conn, now time.Time) bool {
	return t.IdleTimeout > 0 && now.Sub(c.since) >= t.IdleTimeout
}

// isAlive reports whether an idle connection is still open: one
// non-blocking read on the socket, which must find nothing to read (the
// backend closed it: EOF or a reset; or sent something unasked: not
// reusable either). A byte it reads is lost, but then the connection is
// closed anyway. The raw socket and the read function are made once per
// connection (no allocation per call).
func isAlive(c *conn) bool {
	if c.rc == nil {
		return true
	}
	c.probeOK = false
	return c.rc.Read(c.probe) == nil && c.probeOK
}

// probeFD is the non-blocking read of isAlive.
func (c *conn) probeFD(fd uintptr) bool {
	n, err := syscall.Read(int(fd), c.probeBuf[:])
	c.probeOK = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
	return true // never wait
}

// tlsBuffered reports whether a TLS connection holds decrypted bytes no
// one asked for (sent after an answer, in the same record), which the
// liveness check on the socket cannot see: a TLS read while the socket
// under it answers "try later" at once returns them, or that temporary
// error, which crypto/tls does not keep (the connection stays usable).
// No system call, no deadline timer.
func tlsBuffered(c *conn) bool {
	tc, ok := c.nc.(*tls.Conn)
	if !ok || c.sock == nil {
		return false
	}
	var b [1]byte
	c.sock.probing = true
	n, err := tc.Read(b[:])
	c.sock.probing = false
	return n > 0 || err != errProbe
}

// tlsSocket is the TCP connection under a TLS one, failing reads at once
// while probing.
type tlsSocket struct {
	net.Conn
	probing bool
}

func (s *tlsSocket) Read(p []byte) (int, error) {
	if s.probing {
		return 0, errProbe
	}
	return s.Conn.Read(p)
}

// probeError is temporary, so that crypto/tls does not make it sticky.
type probeError struct{}

func (probeError) Error() string   { return "upstream: probing a TLS connection" }
func (probeError) Timeout() bool   { return true }
func (probeError) Temporary() bool { return true }

var errProbe error = probeError{}

func (t *Transport) dial(ctx context.Context, key poolKey, u *url.URL) (*conn, error) {
	addr := canonicalAddr(u)
	dctx := ctx
	if t.DialTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, t.DialTimeout)
		defer cancel()
	}
	d := net.Dialer{KeepAlive: t.KeepAlive}
	raw, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &conn{key: key, nc: raw, raw: raw}
	if sc, ok := raw.(syscall.Conn); ok {
		if c.rc, err = sc.SyscallConn(); err != nil {
			_ = raw.Close()
			return nil, err
		}
		c.probe = c.probeFD
	}
	if u.Scheme == "https" {
		cfg := &tls.Config{}
		if t.TLSConfig != nil {
			cfg = t.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		cfg.NextProtos = []string{"http/1.1"}
		c.sock = &tlsSocket{Conn: raw}
		tc := tls.Client(c.sock, cfg)
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
		st := tc.ConnectionState()
		c.nc, c.tls = tc, &st
	}
	c.br, c.bw = bufio.NewReaderSize(c, 16<<10), bufio.NewWriterSize(c, 8<<10)
	c.closeFn = func() { _ = c.nc.Close() }
	return c, nil
}

// put returns c to the pool, or closes it when the pool is full.
func (t *Transport) put(c *conn) {
	c.since = time.Now()
	c.used = true
	maxIdle := t.MaxIdlePerHost
	if maxIdle == 0 {
		maxIdle = DefaultMaxIdlePerHost
	}
	if maxIdle < 0 {
		_ = c.nc.Close()
		return
	}
	t.mu.Lock()
	if t.idle == nil {
		t.idle = map[poolKey][]*conn{}
	}
	list := t.idle[c.key]
	// Close those idle too long (oldest first) and those over the cap.
	drop := 0
	for drop < len(list) && (t.expired(list[drop], c.since) || len(list)-drop >= maxIdle) {
		drop++
	}
	var old []*conn
	if drop > 0 {
		old = append(old, list[:drop]...)
		n := copy(list, list[drop:])
		clear(list[n:])
		list = list[:n]
	}
	t.idle[c.key] = append(list, c)
	if t.IdleTimeout > 0 && t.sweep == nil {
		t.sweep = time.AfterFunc(t.IdleTimeout, t.sweepIdle)
	}
	t.mu.Unlock()
	for _, o := range old {
		_ = o.nc.Close()
	}
}

// sweepIdle closes the connections idle longer than IdleTimeout, so that a
// pool no call comes to does not hold sockets the backend has long closed.
// One timer per Transport, armed only while connections are idle.
func (t *Transport) sweepIdle() {
	now := time.Now()
	var old []*conn
	next := time.Duration(-1)
	t.mu.Lock()
	for key, list := range t.idle {
		drop := 0
		for drop < len(list) && t.expired(list[drop], now) {
			drop++
		}
		old = append(old, list[:drop]...)
		n := copy(list, list[drop:])
		clear(list[n:])
		if n == 0 {
			delete(t.idle, key)
			continue
		}
		t.idle[key] = list[:n]
		if left := t.IdleTimeout - now.Sub(list[0].since); next < 0 || left < next {
			next = left
		}
	}
	if next >= 0 {
		t.sweep.Reset(next + time.Millisecond)
	} else {
		t.sweep = nil
	}
	t.mu.Unlock()
	for _, o := range old {
		_ = o.nc.Close()
	}
}

// CloseIdleConnections closes the pooled connections (and Fallback's).
// Connections in use are not closed.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	all := t.idle
	t.idle = nil
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

// exchange writes req on c and reads the response headers. On error c is
// closed (or, when not a byte was written, back in the pool).
func (t *Transport) exchange(ctx context.Context, c *conn, req *http.Request, h *head) (*http.Response, error) {
	c.written, c.werr = 0, nil
	// A cancelled context closes the connection, which ends a blocked
	// write or read; the error is then the context's.
	stop := context.AfterFunc(ctx, c.closeFn)
	fail := func(e error) (*http.Response, error) {
		stop()
		_ = c.nc.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, e
	}
	writeHead(c.bw, req.Header, h)
	var werr error
	if req.Body != nil && req.Body != http.NoBody {
		werr = c.writeBody(req.Body, req.ContentLength)
	}
	if werr == nil {
		werr = c.bw.Flush()
	}
	var early bool
	if werr != nil {
		// A backend may answer (413, 401) and close without reading a
		// large body; the write then fails, but its answer may be in
		// hand already, which is what the caller should get (net/http's
		// Transport, reading all along, returns it too).
		if c.written == 0 || c.werr == nil || ctx.Err() != nil || c.nc.SetReadDeadline(time.Now().Add(earlyWait)) != nil {
			return fail(werr)
		}
		early = true
	}
	resp, err := t.readHead(c, req)
	if early {
		if err != nil || c.nc.SetReadDeadline(time.Time{}) != nil {
			return fail(werr)
		}
	} else if err != nil {
		// Not retried: the backend may have read the request (as
		// net/http's Transport, which sends a POST again only when
		// nothing was written).
		return fail(err)
	}
	resp.TLS = c.tls
	reuse := !resp.Close && !h.close && !early // early: the rest of the request was never sent
	if resp.Body == http.NoBody || resp.Body == nil {
		resp.Body = http.NoBody
		if stop() && reuse && c.br.Buffered() == 0 {
			t.put(c)
		} else {
			_ = c.nc.Close()
		}
		return resp, nil
	}
	resp.Body = &body{rc: resp.Body, c: c, t: t, stop: stop, ctx: ctx, reuse: reuse}
	return resp, nil
}

// earlyWait bounds the wait for an answer after a failed request write.
const earlyWait = 50 * time.Millisecond

// readHead reads the response headers, past informational answers.
func (t *Transport) readHead(c *conn, req *http.Request) (*http.Response, error) {
	maxHead := t.MaxResponseHeaderBytes
	if maxHead <= 0 {
		maxHead = DefaultMaxResponseHeaderBytes
	}
	c.limit = maxHead
	for n1xx := 0; ; n1xx++ {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			if err == io.ErrUnexpectedEOF && c.limit == maxHead && c.br.Buffered() == 0 {
				err = io.EOF // closed without a byte of answer: net/http's error too
			}
			return nil, err
		}
		if resp.StatusCode >= 200 {
			c.limit = -1
			return resp, nil
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, errors.New("upstream: unexpected 101 Switching Protocols")
		}
		if n1xx == max1xx {
			return nil, errors.New("upstream: too many 1xx informational responses")
		}
		// An informational answer (100, 103): the real one follows.
	}
}

// writeHead writes the request line and headers check validated.
func writeHead(w *bufio.Writer, hdr http.Header, h *head) {
	w.WriteString(h.method)
	w.WriteByte(' ')
	w.WriteString(h.uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(h.host)
	w.WriteString("\r\n")
	for k, vs := range hdr {
		if reserved(k) != plain {
			continue // ours to write
		}
		for _, v := range vs {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(trim(v))
			w.WriteString("\r\n")
		}
	}
	if h.ua != "" {
		w.WriteString("User-Agent: ")
		w.WriteString(h.ua)
		w.WriteString("\r\n")
	}
	if h.close {
		w.WriteString("Connection: close\r\n")
	}
	if h.length {
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(w.AvailableBuffer(), h.n, 10)) // in place
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
}

// writeBody writes exactly n bytes of r (n > 0): a body that is shorter or
// longer is an error, and no byte past n is sent.
func (c *conn) writeBody(r io.Reader, n int64) error {
	if wt, ok := r.(io.WriterTo); ok { // bytes.Reader: one copy, no buffer
		c.lim = limitWriter{w: c.bw, left: n}
		m, err := wt.WriteTo(&c.lim)
		if err != nil {
			return fmt.Errorf("writing request body: %w", err)
		}
		if m != n {
			return fmt.Errorf("%w: ContentLength=%d with body length %d", ErrBodyLength, n, m)
		}
		return nil
	}
	left := n
	for left > 0 {
		if c.bw.Available() == 0 {
			if err := c.bw.Flush(); err != nil {
				return err
			}
		}
		buf := c.bw.AvailableBuffer()
		buf = buf[:min(int64(cap(buf)), left)]
		m, err := r.Read(buf)
		if m > 0 {
			_, _ = c.bw.Write(buf[:m]) // appends in place: no copy beyond the buffer
			left -= int64(m)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("writing request body: %w", err)
		}
	}
	if left > 0 {
		return fmt.Errorf("%w: ContentLength=%d with body length %d", ErrBodyLength, n, n-left)
	}
	var one [1]byte
	for range 3 { // a longer body is refused before its end is sent
		m, err := r.Read(one[:])
		if m > 0 {
			return fmt.Errorf("%w: ContentLength=%d with a longer body", ErrBodyLength, n)
		}
		if err != nil {
			break
		}
	}
	return nil
}

// limitWriter passes on at most left bytes; a write past them fails whole.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, fmt.Errorf("%w: the body is longer", ErrBodyLength)
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
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

// validHost reports a host or request URI: not empty, no spaces or
// control characters (which would split the request line or header).
func validHost(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// body returns its connection to the pool at EOF. Read and Close are for
// one goroutine, but Close may also come from another one to end a blocked
// Read (it closes the connection).
type body struct {
	rc       io.ReadCloser
	c        *conn
	t        *Transport
	stop     func() bool
	ctx      context.Context
	reuse    bool
	released atomic.Bool // the connection was put back or closed
	err      error       // what every Read returns once the body ended
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.released.Load() {
		return 0, ErrBodyClosed // the connection may be another call's now
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.err = io.EOF
		b.release(b.reuse)
		return n, io.EOF
	}
	if err != nil {
		if !b.release(false) {
			err = ErrBodyClosed // closed by Close from another goroutine
		}
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr
		}
		b.err = err
	}
	return n, err
}

// Close releases the connection: to the pool after EOF, else closed (the
// rest of the body is still on the wire).
func (b *body) Close() error {
	b.release(false)
	return nil
}

// release puts the connection back or closes it, once; it reports whether
// this call did.
func (b *body) release(reuse bool) bool {
	if !b.released.CompareAndSwap(false, true) {
		return false
	}
	if b.stop() && reuse && b.c.br.Buffered() == 0 {
		b.t.put(b.c)
	} else {
		_ = b.c.nc.Close()
	}
	return true
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// rewind returns req with its body readable again for a second attempt
// (a copy: the caller's request is not changed), or nil.
func rewind(req *http.Request) *http.Request {
	if req.Body == nil || req.Body == http.NoBody {
		return req
	}
	if req.GetBody == nil {
		return nil
	}
	b, err := req.GetBody()
	if err != nil {
		return nil
	}
	r2 := *req
	r2.Body = b
	return &r2
}
