package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the flusher goroutine.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) get() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String(), l.writes
}

func TestLogBuffer(t *testing.T) {
	var out lockedBuffer
	lb := newLogBuffer(&out, time.Hour) // no timer flush during the test
	// The first line after a quiet interval is written at once.
	lb.Write([]byte("first\n"))
	if s, _ := out.get(); s != "first\n" {
		t.Fatalf("a line after a quiet interval was not written at once: %q", s)
	}
	for range 100 {
		lb.Write([]byte("line\n"))
	}
	if s, _ := out.get(); s != "first\n" {
		t.Fatalf("written before a flush: %q", s)
	}
	lb.Flush()
	if s, w := out.get(); s != "first\n"+strings.Repeat("line\n", 100) || w != 2 {
		t.Fatalf("after Flush: %d writes of %d bytes, want 2 of 506", w, len(s))
	}
	// A full buffer is written out at once.
	big := bytes.Repeat([]byte("x"), logMaxBuffered)
	lb.Write(big)
	if s, _ := out.get(); len(s) != 506+logMaxBuffered {
		t.Fatalf("after a full buffer: %d bytes written", len(s))
	}
	lb.Write([]byte("last\n"))
	lb.Close()
	if s, _ := out.get(); !strings.HasSuffix(s, "last\n") {
		t.Fatal("Close did not write out the rest")
	}
	lb.Write([]byte("after\n"))
	if s, _ := out.get(); !strings.HasSuffix(s, "after\n") {
		t.Fatal("a write after Close was not passed through")
	}
}

func TestLogBufferTimer(t *testing.T) {
	var out lockedBuffer
	lb := newLogBuffer(&out, 50*time.Millisecond)
	defer lb.Close()
	lb.Write([]byte("now\n"))  // written at once
	lb.Write([]byte("tick\n")) // buffered, then written by the timer
	if s, _ := out.get(); s != "now\n" {
		t.Fatalf("got %q before the timer", s)
	}
	for range 2000 {
		if s, _ := out.get(); s == "now\ntick\n" {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the timer never wrote the line out")
}
