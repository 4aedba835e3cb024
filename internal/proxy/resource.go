package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/route"
)

// Resource is a call on something that lives on one backend, such as a
// stored Responses API response (GET, DELETE, cancel, input_items): it
// goes to that backend only, once, with no failover: another backend
// does not have it.
type Resource struct {
	Backend *route.Backend
	Method  string
	// Path is the backend path ("/openai/v1/responses/resp_…"); RawQuery
	// the client's query string.
	Path, RawQuery string
	Body           []byte
	RequestID      string
}

// ForwardResource sends c to its backend and copies the answer to w,
// streaming (flushed per write) when it is an event stream. It returns
// the status the client got.
func (p *Proxy) ForwardResource(w http.ResponseWriter, r *http.Request, c Resource) int {
	b := c.Backend
	if !b.Health.Allow() {
		httperr.Write(w, &httperr.Error{Status: http.StatusServiceUnavailable, Code: "no_healthy_backend",
			Msg: "The backend that holds this response is not available right now."})
		return http.StatusServiceUnavailable
	}
	ctx, cancel := context.WithTimeout(r.Context(), b.Timeout)
	defer cancel()
	u := b.URL + c.Path
	if c.RawQuery != "" {
		u += "?" + c.RawQuery
	}
	var body io.Reader
	if c.Body != nil {
		body = bytes.NewReader(c.Body)
	}
	out, err := http.NewRequestWithContext(ctx, c.Method, u, body)
	if err != nil {
		b.Health.Record(httperr.StatusClientClosedRequest, 0)
		httperr.Write(w, err)
		return http.StatusInternalServerError
	}
	out.Header = outboundHeader(r.Header)
	if p.opt.AffinityHeader != "" {
		out.Header.Del(p.opt.AffinityHeader)
	}
	out.Header.Set("Accept-Encoding", "identity")
	if c.Body != nil {
		out.Header.Set("Content-Type", "application/json")
	}
	if c.RequestID != "" {
		out.Header.Set("X-Ms-Client-Request-Id", c.RequestID)
	}
	if err := b.Auth.Authorize(ctx, out.Header); err != nil {
		b.Health.Record(httperr.StatusClientClosedRequest, 0)
		e := &httperr.Error{Status: http.StatusBadGateway, Code: "backend_unreachable", Msg: "The gateway could not authenticate to the backend.",
			Err: fmt.Errorf("backend %s auth: %w", b.Name, err)}
		httperr.Write(w, e)
		return e.Status
	}
	start := time.Now()
	resp, err := p.rt.RoundTrip(out)
	if err != nil {
		e := &httperr.Error{Status: http.StatusBadGateway, Code: "backend_unreachable", Msg: "The model backend could not be reached.",
			Err: fmt.Errorf("backend %s: %w", b.Name, err)}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			e = &httperr.Error{Status: http.StatusGatewayTimeout, Code: "backend_timeout", Msg: "The model backend did not answer in time.", Err: e.Err}
		}
		b.Health.Record(e.Status, time.Since(start))
		httperr.Write(w, e)
		return e.Status
	}
	defer resp.Body.Close()
	b.Health.Record(resp.StatusCode, time.Since(start))
	copyResponseHeader(w.Header(), resp.Header, false)
	if p.opt.ExposeBackend {
		w.Header().Set("X-Gateway-Backend", b.Name)
	}
	w.WriteHeader(resp.StatusCode)
	var dst io.Writer = w
	if isEventStream(resp.Header.Get("Content-Type")) {
		dst = &flushWriter{w: w, rc: http.NewResponseController(w)}
	}
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	_, _ = io.CopyBuffer(dst, resp.Body, *bp)
	return resp.StatusCode
}
