package blob_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/audit"
	"github.com/foundry-gateway/gateway/internal/blob"
)

// lostAnswers appends for real but reports a failure for a seeded share
// of appends, as when Azure's answer is lost on the way back.
type lostAnswers struct {
	*blob.Azure
	mu  sync.Mutex
	rnd *rand.Rand
}

func (l *lostAnswers) AppendAt(ctx context.Context, name string, data []byte, at int64) (int, error) {
	n, err := l.Azure.AppendAt(ctx, name, data, at)
	l.mu.Lock()
	lose := l.rnd.Float64() < 0.3
	l.mu.Unlock()
	if err == nil && lose {
		return 0, errors.New("injected: answer lost")
	}
	return n, err
}

// TestAuditWriterOnAzurite: the audit trail's writer (internal/audit) on
// real append blobs. The append-position condition turns retries of
// appends that landed into no-ops: every record once, found by Lookup.
// (Here and not in internal/audit: it shares this package's Azurite.)
func TestAuditWriterOnAzurite(t *testing.T) {
	a, err := blob.NewAzure(blob.AzureOptions{ConnectionString: az.Start(t).ConnectionString(), Container: "audit-writer"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.EnsureContainer(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { now = now.Add(time.Minute); return now } // no backoff waits
	w := audit.NewWriter(&lostAnswers{Azure: a, rnd: rand.New(rand.NewPCG(5, 6))}, audit.Options{Now: clock})
	base := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	ids := make([]string, 30)
	for i := range ids {
		ts := base.Add(time.Duration(i) * time.Second)
		ids[i] = fmt.Sprintf("%012x%020d", ts.UnixMilli(), i)
		r := audit.Record{Time: ts, RequestID: ids[i], Team: []string{"research", "finance"}[i%2], Model: "m", Status: 200}
		r.SetBodies([]byte(fmt.Sprintf(`{"q":%d}`, i)), []byte(fmt.Sprintf("data: %d\n\n", i)))
		w.Record(ctx, r)
		if i%5 == 4 {
			_ = w.Flush(ctx)
		}
	}
	for i := 0; i < 100 && w.Stats().Buffered > 0; i++ {
		_ = w.Flush(ctx)
	}
	if st := w.Stats(); st.Landed == 0 || st.Buffered != 0 || st.Relocated != 0 {
		t.Fatalf("stats %+v: want lost answers recognised, nothing left, nothing relocated", st)
	}
	seen := map[string]int{}
	if bad, err := audit.Scan(ctx, a, "", func(_ string, r audit.Record) { seen[r.RequestID]++ }); err != nil || bad != 0 {
		t.Fatalf("Scan: %v, %d bad", err, bad)
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("%s: %d copies, want 1", id, seen[id])
		}
	}
	if got, err := audit.Lookup(ctx, a, ids[7], "finance"); err != nil || got.RequestID != ids[7] {
		t.Errorf("Lookup: %+v %v", got, err)
	}
}
