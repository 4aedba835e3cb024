package proxy

import (
	"mime"
	"testing"
)

// isEventStream's shortcut (no parse unless the type starts with
// text/event-stream) answers as parsing every type did.
func TestIsEventStreamAgreesWithParse(t *testing.T) {
	for _, ct := range []string{"", "application/json", "application/json; charset=utf-8", "text/event-stream",
		"text/event-stream; charset=utf-8", "Text/Event-Stream", " \ttext/event-stream", "\u00a0text/event-stream",
		"text/event-streamx", "text/event-stream;", "text/event-stream; =bad", "text/event", "text/plain",
		"multipart/form-data; boundary=x", "TEXT/EVENT-STREAM ; q=1"} {
		mt, _, err := mime.ParseMediaType(ct)
		want := err == nil && mt == "text/event-stream"
		if got := isEventStream(ct); got != want {
			t.Errorf("isEventStream(%q) = %v, want %v", ct, got, want)
		}
	}
}
