package sim

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// pacing is the latency model of one request.
type pacing struct {
	ttft time.Duration
	tps  float64 // 0 = unpaced
}

// tokens is how long generating n tokens takes.
func (p pacing) tokens(n int64) time.Duration {
	if p.tps <= 0 || n <= 0 {
		return 0
	}
	return time.Duration(float64(n) / p.tps * float64(time.Second))
}

// sleep waits for d or until ctx is done, whichever is first, so a client
// that goes away stops the work at once.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sseWriter writes Server-Sent Events and flushes after every one: the
// point of a streaming simulator is that bytes leave as soon as they are
// produced, so the gateway's own buffering (or lack of it) is observable.
type sseWriter struct {
	ctx        context.Context
	w          http.ResponseWriter
	rc         *http.ResponseController
	buf        []byte
	sent       int // events written so far
	pauseAfter int
	pause      time.Duration
}

func newSSEWriter(ctx context.Context, w http.ResponseWriter, st steering) *sseWriter {
	return &sseWriter{ctx: ctx, w: w, rc: http.NewResponseController(w), pauseAfter: st.pauseAfter, pause: st.pause}
}

// start sends the 200 and the event-stream headers.
func (s *sseWriter) start() {
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	s.w.WriteHeader(http.StatusOK)
}

// json marshals v and sends it as one event; name is the `event:` field
// (empty for chat completion chunks, which have none).
func (s *sseWriter) json(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.send(name, b)
}

// send writes one event, flushes it, and honours x-sim-pause-after-chunk.
func (s *sseWriter) send(name string, data []byte) error {
	s.buf = s.buf[:0]
	if name != "" {
		s.buf = append(s.buf, "event: "...)
		s.buf = append(s.buf, name...)
		s.buf = append(s.buf, '\n')
	}
	s.buf = append(s.buf, "data: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
	if _, err := s.w.Write(s.buf); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	s.sent++
	if s.sent == s.pauseAfter {
		return sleep(s.ctx, s.pause)
	}
	return nil
}
