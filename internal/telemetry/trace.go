package telemetry

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
)

// Trace is W3C trace context for one hop: the trace id shared by every
// span of an operation, and this span's parent.
type Trace struct {
	// TraceID is 32 lowercase hex characters; it is the Application
	// Insights operation id.
	TraceID string
	// ParentID is the caller's span id (16 hex), empty when we started the trace.
	ParentID string
	// SpanID is this hop's span id (16 hex).
	SpanID string
	// Flags is the trace-flags byte as two hex characters ("01" = sampled).
	Flags string
}

// FromHeader continues the trace in h's traceparent, or starts a new one
// when the header is absent or malformed (as the W3C spec requires).
func FromHeader(h http.Header) Trace {
	if tid, pid, fl, ok := parseTraceparent(h.Get("Traceparent")); ok {
		return Trace{TraceID: tid, ParentID: pid, SpanID: newID(8), Flags: fl}
	}
	return Trace{TraceID: newID(16), SpanID: newID(8), Flags: "01"}
}

// Child returns a new span under t (for one backend attempt).
func (t Trace) Child() Trace {
	return Trace{TraceID: t.TraceID, ParentID: t.SpanID, SpanID: newID(8), Flags: t.Flags}
}

// Traceparent is the header value that makes t the parent of the next hop.
func (t Trace) Traceparent() string {
	return "00-" + t.TraceID + "-" + t.SpanID + "-" + t.Flags
}

// parseTraceparent validates "00-<32 hex>-<16 hex>-<2 hex>" (version 00;
// higher versions are read by their first four fields, per the spec).
func parseTraceparent(v string) (traceID, parentID, flags string, ok bool) {
	v = strings.TrimSpace(v)
	if len(v) < 55 {
		return "", "", "", false
	}
	ver, tid, pid, fl := v[0:2], v[3:35], v[36:52], v[53:55]
	if v[2] != '-' || v[35] != '-' || v[52] != '-' || !isHex(ver) || ver == "ff" || !isHex(tid) || !isHex(pid) || !isHex(fl) {
		return "", "", "", false
	}
	if ver == "00" && len(v) != 55 {
		return "", "", "", false
	}
	if len(v) > 55 && v[55] != '-' {
		return "", "", "", false
	}
	if allZero(tid) || allZero(pid) {
		return "", "", "", false
	}
	return tid, pid, fl, true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool { return strings.Trim(s, "0") == "" }

func newID(n int) string {
	b := make([]byte, n)
	for {
		_, _ = rand.Read(b)
		for _, c := range b {
			if c != 0 {
				return hex.EncodeToString(b)
			}
		}
	}
}
