// Package upstream is the gateway's HTTP/1.1 client for model backends: an
// http.RoundTripper that writes the request and reads the response on the
// caller's goroutine.
//
// net/http's Transport gives every pooled connection two goroutines (a
// reader and a writer) and hands each request and response between them and
// the caller over channels: three goroutine wake-ups per call, each of which
// may wake an idle OS thread. On a small VM those wake-ups were a fifth of
// the gateway's CPU at one connection (issue 17). Here the caller writes the
// request, reads the response headers and, through the returned body, the
// response, so a call costs the system calls and nothing else.
//
// Connections are kept alive in a pool per scheme://host:port, most recently
// used first; one timer per Transport closes those idle past IdleTimeout.
// Before a pooled connection is reused, one non-blocking read checks that
// the backend has not closed it or sent something unasked (over TLS, bytes
// already decrypted are looked for too). A request is sent again, once, on a
// new connection only when the reused connection refused the very first
// byte of it: nothing can have reached the backend. A response body returns
// its connection to the pool when it is read to its end with nothing past
// it; closing it earlier, a read error, or the request's context ending
// close the connection instead (the context through context.AfterFunc, so
// no goroutine waits on it). A backend that answers before reading the
// whole request body (413) and closes gives that answer, not the write's
// error.
//
// A request is checked before any connection is taken, as net/http checks
// it: header names and values, method, Host and request URI that could
// split the request are refused, and the body must have exactly
// ContentLength bytes (no byte past it is sent).
//
// What it does not do it hands to Fallback (a net/http Transport): requests
// through an HTTP proxy (Proxy), bodies of unknown length or sent chunked,
// request trailers, Expect: 100-continue, protocol upgrades, URLs with user
// info, and schemes other than http and https. Backends are spoken to over
// HTTP/1.1 with keep-alive (TLS ALPN offers only http/1.1), as nginx speaks
// to its upstreams. It never compresses: the caller sets Accept-Encoding.
package upstream
