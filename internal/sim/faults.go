package sim

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Steering headers: how tests (directly or through the gateway) make the
// simulator misbehave on purpose. See the package documentation.
const (
	HeaderFault           = "x-sim-fault"
	HeaderRetryAfterMS    = "x-sim-retry-after-ms"
	HeaderPauseAfter      = "x-sim-pause-after-chunk"
	HeaderPauseMS         = "x-sim-pause-ms"
	HeaderLatencyTTFTMS   = "x-sim-latency-ttft-ms"
	HeaderTokensPerSecond = "x-sim-tokens-per-second"
)

// defaultFaultRetryFor is the wait a steered 429 quotes without
// x-sim-retry-after-ms.
const defaultFaultRetryFor = time.Second

// fault is one way to fail a request.
type fault string

const (
	faultNone           fault = ""
	fault500            fault = "500"
	fault502            fault = "502"
	fault503            fault = "503"
	fault429            fault = "429"
	faultTimeout        fault = "timeout"          // accept, never answer
	faultCut            fault = "cut"              // abort halfway through the body
	faultCutBeforeUsage fault = "cut-before-usage" // stream all but the usage chunk and [DONE]/terminal event
	faultReset          fault = "reset"            // close the connection before any response
)

// steering is what the x-sim-* headers of one request ask for.
type steering struct {
	fault      fault
	retryAfter time.Duration // for fault429
	pauseAfter int           // 1-based SSE event number; 0 = no pause
	pause      time.Duration
	ttft       *time.Duration
	tps        *float64
}

// parseSteering reads the x-sim-* headers. Bad values are the test
// author's mistake, so they are reported (400) rather than ignored.
func parseSteering(h http.Header) (steering, error) {
	st := steering{retryAfter: defaultFaultRetryFor}
	switch f := fault(h.Get(HeaderFault)); f {
	case faultNone, fault500, fault502, fault503, fault429, faultTimeout, faultCut, faultCutBeforeUsage, faultReset:
		st.fault = f
	default:
		return st, fmt.Errorf("%s: unknown fault %q", HeaderFault, f)
	}
	if d, ok, err := headerMS(h, HeaderRetryAfterMS); err != nil {
		return st, err
	} else if ok {
		st.retryAfter = d
	}
	if d, ok, err := headerMS(h, HeaderLatencyTTFTMS); err != nil {
		return st, err
	} else if ok {
		st.ttft = &d
	}
	var err error
	if st.pause, _, err = headerMS(h, HeaderPauseMS); err != nil {
		return st, err
	}
	if v := h.Get(HeaderPauseAfter); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return st, fmt.Errorf("%s: want a positive integer, got %q", HeaderPauseAfter, v)
		}
		st.pauseAfter = n
	}
	if v := h.Get(HeaderTokensPerSecond); v != "" {
		tps, err := strconv.ParseFloat(v, 64)
		if err != nil || tps < 0 || math.IsInf(tps, 0) || math.IsNaN(tps) {
			return st, fmt.Errorf("%s: want a non-negative number, got %q", HeaderTokensPerSecond, v)
		}
		st.tps = &tps
	}
	return st, nil
}

// headerMS reads a header holding a non-negative number of milliseconds.
func headerMS(h http.Header, name string) (d time.Duration, ok bool, err error) {
	v := h.Get(name)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("%s: want a non-negative integer, got %q", name, v)
	}
	return time.Duration(n) * time.Millisecond, true, nil
}

// drawFault applies the configured fault rates. The n-th request of a
// deployment always gets the same draw for the same seed, so a failing run
// can be replayed; a cut applies to streams only.
func drawFault(f Faults, n uint64, stream bool) fault {
	if f.ErrorRate == 0 && f.TimeoutRate == 0 && f.CutStreamRate == 0 {
		return faultNone
	}
	u := float64(mix(f.Seed^mix(n))>>11) / (1 << 53) // uniform in [0,1)
	switch {
	case u < f.ErrorRate:
		return fault500
	case u < f.ErrorRate+f.TimeoutRate:
		return faultTimeout
	case stream && u < f.ErrorRate+f.TimeoutRate+f.CutStreamRate:
		return faultCut
	}
	return faultNone
}

// abort ends the response abruptly. After headers were sent this is the
// only way to tell the client the body is incomplete; net/http recovers
// this panic silently and closes the connection. Callers must hold no
// locks.
func abort() { panic(http.ErrAbortHandler) }

// resetConn closes the connection without writing anything, with a TCP RST
// where possible, so the client sees a transport error rather than a
// response. Under HTTP/2 (no hijacking) it falls back to [abort].
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		abort()
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0) // close with RST instead of FIN
	}
	_ = conn.Close()
}
