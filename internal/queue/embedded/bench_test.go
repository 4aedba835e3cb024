package embedded_test

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/foundry-gateway/gateway/internal/queue"
	"github.com/foundry-gateway/gateway/internal/queue/embedded"
)

// BenchmarkSendReceiveComplete is one message's whole life: three fsynced
// bbolt transactions (Send, Receive, Complete) with a 1 KiB body.
func BenchmarkSendReceiveComplete(b *testing.B) {
	q, err := embedded.Open(filepath.Join(b.TempDir(), "queue.db"), embedded.Options{})
	if err != nil {
		b.Fatalf("Open: %v", err)
	}
	defer q.Close()
	ctx := b.Context()
	body := make([]byte, 1024)
	props := map[string]string{"team": "research", "kind": "chat"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if err := q.Send(ctx, queue.Outgoing{ID: "job-" + strconv.Itoa(i), Body: body, Properties: props}); err != nil {
			b.Fatalf("Send: %v", err)
		}
		msgs, err := q.Receive(ctx, 1, 0)
		if err != nil || len(msgs) != 1 {
			b.Fatalf("Receive: got %d messages, %v, want 1", len(msgs), err)
		}
		if err := q.Complete(ctx, msgs[0]); err != nil {
			b.Fatalf("Complete: %v", err)
		}
	}
}
