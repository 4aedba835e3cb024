package handlers

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/httperr"
)

// bodyDeadline bounds the time to read a request body (issue #16: a client
// sending a byte every 2 s held a connection for minutes). The header block
// is bounded by the server's ReadHeaderTimeout; the body by a read deadline
// set here, lifted again when the body has been read, so long streamed
// answers (whose disconnect detection reads the connection) are not cut.
// net/http sets its own deadline for the next request's headers.
func bodyDeadline(d time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if d <= 0 || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
				return next(c)
			}
			rc := http.NewResponseController(c.Response())
			if rc.SetReadDeadline(time.Now().Add(d)) != nil {
				return next(c) // not a connection (tests); nothing to bound
			}
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
			return next(c)
		}
	}
}

// deadlineBody lifts the read deadline at the end of the body.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// bodyReadError maps a failed body read: 408 when the client was too slow
// (the connection is closed after the answer), 400 otherwise.
func bodyReadError(c echo.Context, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.Response().Header().Set("Connection", "close")
		return httperr.Wrap(err, http.StatusRequestTimeout, "request_timeout",
			"The request body was not received in time (bodyReadTimeout); send it at once.")
	}
	return httperr.Wrap(err, http.StatusBadRequest, "invalid_request_error", "Could not read the request body.")
}
