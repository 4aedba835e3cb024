package proxy

import (
	"net/http"
	"net/textproto"
	"strings"
)

// hopHeaders are removed in both directions (RFC 9110 §7.6.1).
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// dropRequest are client headers a backend must never see: the client's
// credentials (the backend gets ours), headers the transport sets, forwarding
// headers from untrusted clients, and the Functions host's own headers.
var dropRequest = map[string]bool{
	"Authorization":                  true,
	"Api-Key":                        true,
	"Host":                           true,
	"Content-Length":                 true,
	"Accept-Encoding":                true, // we must read the body to count usage
	"Cookie":                         true,
	"Forwarded":                      true,
	"X-Forwarded-For":                true,
	"X-Forwarded-Host":               true,
	"X-Forwarded-Proto":              true,
	"X-Real-Ip":                      true,
	"X-Functions-Key":                true,
	"X-Azure-Functions-Invocationid": true,
	"X-Azure-Functions-Hostversion":  true,
	"X-Ms-Invocation-Id":             true,
}

// connectionTokens returns the headers named by Connection.
func connectionTokens(h http.Header) map[string]bool {
	var m map[string]bool
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				if m == nil {
					m = map[string]bool{}
				}
				m[http.CanonicalHeaderKey(f)] = true
			}
		}
	}
	return m
}

// outboundHeader copies the client's headers a backend may see.
func outboundHeader(in http.Header) http.Header {
	conn := connectionTokens(in)
	out := make(http.Header, len(in)+3)
	for k, v := range in {
		if hopHeaders[k] || dropRequest[k] || conn[k] {
			continue
		}
		out[k] = v
	}
	return out
}

// BackendRequestIDHeader carries the backend's x-request-id to the client:
// x-request-id itself is always the gateway's own id, the one in its logs,
// the UsageEvents row key and telemetry. Azure OpenAI's apim-request-id is
// passed through unchanged.
const BackendRequestIDHeader = "X-Gateway-Backend-Request-Id"

// copyResponseHeader copies a backend's response headers to the client. The
// backend's X-Request-Id is renamed to [BackendRequestIDHeader] so that it
// never replaces the gateway's.
func copyResponseHeader(dst, src http.Header, dropLength bool) {
	conn := connectionTokens(src)
	for k, v := range src {
		if hopHeaders[k] || conn[k] || (dropLength && k == "Content-Length") {
			continue
		}
		if k == "X-Request-Id" {
			dst[BackendRequestIDHeader] = v
			continue
		}
		if _, ours := dst[k]; ours && strings.HasPrefix(k, "X-Ratelimit-") {
			continue // the gateway's own limits, set before forwarding, win
		}
		dst[k] = v
	}
}
