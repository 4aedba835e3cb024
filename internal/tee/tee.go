package tee

import (
	"net/http"
)

// Writer is an http.ResponseWriter that keeps a copy of the body it
// passes on (up to a limit). Flushes and http.ResponseController reach
// the wrapped writer through Unwrap.
type Writer struct {
	http.ResponseWriter
	limit     int
	buf       []byte
	truncated bool
}

// New wraps w, keeping at most limit bytes.
func New(w http.ResponseWriter, limit int) *Writer {
	return &Writer{ResponseWriter: w, limit: limit}
}

// Write implements http.ResponseWriter.
func (c *Writer) Write(b []byte) (int, error) {
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
func (c *Writer) Flush() { _ = http.NewResponseController(c.ResponseWriter).Flush() }

// Unwrap returns the wrapped writer (http.ResponseController).
func (c *Writer) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Bytes returns what was kept and whether more was written.
func (c *Writer) Bytes() ([]byte, bool) { return c.buf, c.truncated }
