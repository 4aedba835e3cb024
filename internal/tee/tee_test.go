package tee

import (
	"net/http/httptest"
	"testing"
)

// TestWriter: the client gets every byte; the copy stops at the limit and
// says it was truncated; flushes reach the wrapped writer.
func TestWriter(t *testing.T) {
	for _, tt := range []struct {
		limit     int
		want      string
		truncated bool
	}{{100, "hello world", false}, {11, "hello world", false}, {7, "hello w", true}, {0, "", true}} {
		rec := httptest.NewRecorder()
		w := New(rec, tt.limit)
		for _, s := range []string{"hello", " ", "world"} {
			if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
				t.Fatalf("Write(%q) = %d, %v", s, n, err)
			}
		}
		w.Flush()
		got, truncated := w.Bytes()
		if string(got) != tt.want || truncated != tt.truncated || rec.Body.String() != "hello world" || !rec.Flushed {
			t.Errorf("limit %d: kept %q truncated %v, client %q flushed %v; want %q %v", tt.limit, got, truncated,
				rec.Body.String(), rec.Flushed, tt.want, tt.truncated)
		}
		if w.Unwrap() != rec {
			t.Error("Unwrap does not return the wrapped writer")
		}
	}
}
