package route

import (
	"slices"
	"testing"
	"time"
)

// TestBreakerNotifies (issue #16 item 8): every open and close of a circuit
// reaches the watcher once (for logs and telemetry).
func TestBreakerNotifies(t *testing.T) {
	now := time.Unix(1000, 0)
	var b Breaker
	b.init(BreakerOptions{Failures: 3, OpenFor: time.Second}, func() time.Time { return now })
	var got []string
	b.notify = func(to string) { got = append(got, to) }
	for i := 0; i < 5; i++ {
		b.Record(503, time.Millisecond)
	}
	now = now.Add(2 * time.Second)
	if !b.Allow() { // the probe
		t.Fatal("no probe after OpenFor")
	}
	b.Record(500, time.Millisecond) // the probe fails: open again
	now = now.Add(2 * time.Second)
	if !b.Allow() {
		t.Fatal("no second probe")
	}
	b.Record(200, time.Millisecond) // closes
	if want := []string{"open", "open", "closed"}; !slices.Equal(got, want) {
		t.Errorf("transitions %v, want %v", got, want)
	}
}
