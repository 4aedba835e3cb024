package main

import (
	"io"
	"sync"
	"time"
)

// logBuffer batches the gateway's log lines (one JSON line per request) into
// few writes. A line is written at once when nothing was written for an
// interval (a quiet gateway logs without delay); otherwise it is appended to
// a buffer that is written out every interval, when it passes maxBuffered,
// and on Close. Under load this turns one write syscall per request into
// one per interval (issue 17); a line reaches stderr at most interval late.
// GATEWAY_LOG_BUFFER=off turns it off.
type logBuffer struct {
	mu       sync.Mutex
	w        io.Writer
	buf      []byte
	closed   bool
	interval time.Duration
	last     time.Time // of the last write to w
	stop     chan struct{}
	done     chan struct{}
	closeOne sync.Once
}

const (
	logFlushInterval = 100 * time.Millisecond
	logMaxBuffered   = 64 << 10
)

func newLogBuffer(w io.Writer, interval time.Duration) *logBuffer {
	b := &logBuffer{w: w, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				b.Flush()
			case <-b.stop:
				return
			}
		}
	}()
	return b
}

// Write buffers p (slog writes one whole line per call).
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.w.Write(p)
	}
	if len(b.buf) == 0 {
		if now := time.Now(); now.Sub(b.last) >= b.interval {
			b.last = now
			return b.w.Write(p)
		}
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= logMaxBuffered {
		b.flushLocked()
	}
	return len(p), nil
}

// Flush writes out what is buffered.
func (b *logBuffer) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *logBuffer) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	_, _ = b.w.Write(b.buf) // stderr: nowhere to report a failure
	b.last = time.Now()
	if cap(b.buf) > 4*logMaxBuffered {
		b.buf = nil // a burst: do not keep a large buffer
	} else {
		b.buf = b.buf[:0]
	}
}

// Close stops the timer and writes out what is left; later writes go
// straight through.
func (b *logBuffer) Close() error {
	b.closeOne.Do(func() {
		close(b.stop)
		<-b.done
		b.mu.Lock()
		defer b.mu.Unlock()
		b.flushLocked()
		b.closed = true
	})
	return nil
}
