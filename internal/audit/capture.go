package audit

import (
	"net/http"
)

// Capture is an http.ResponseWriter that keeps a copy of the body it
// passes on (up to a limit), for the audit record. Flushes and
// http.ResponseController reach the wrapped writer through Unwrap.
type Capture struct {
	http.ResponseWriter
	limit     int
	buf       []byte
	truncated bool
}

// NewCapture wraps w, keeping at most limit bytes.
func NewCapture(w http.ResponseWriter, limit int) *Capture {
	return &Capture{ResponseWriter: w, limit: limit}
}

// Write implements http.ResponseWriter.
func (c *Capture) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	if room := c.limit - len(c.buf); room > 0 {
		c.buf = append(c.buf, b[:min(n, room)]...)
		c.truncated = c.truncated || n > room
	} else if n > 0 {
		c.truncated = true
	}
	return n, err
}

// Flush implements http.Flusher.
func (c *Capture) Flush() { _ = http.NewResponseController(c.ResponseWriter).Flush() }

// Unwrap returns the wrapped writer (http.ResponseController).
func (c *Capture) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Bytes returns what was captured and whether more was written.
func (c *Capture) Bytes() ([]byte, bool) { return c.buf, c.truncated }
