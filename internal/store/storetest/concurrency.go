package storetest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/foundry-gateway/gateway/internal/store"
)

// testConcurrentIncrements runs the read-modify-write loop the quota code
// uses (Get, Update with the ETag, retry on ErrPrecondition) from 8
// goroutines on one row; no increment may be lost.
func testConcurrentIncrements(t *testing.T, h *harness) {
	tbl := h.table(t)
	const workers, each = 8, 10
	mustInsert(t, tbl, ent("p", "counter", map[string]any{"n": int64(0)}))

	var wg sync.WaitGroup
	var conflicts atomic.Int64
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				for {
					e, err := tbl.Get(t.Context(), "p", "counter")
					if err != nil {
						errs <- err
						return
					}
					e.Props["n"] = e.Props["n"].(int64) + 1
					_, err = tbl.Update(t.Context(), e, e.ETag)
					if errors.Is(err, store.ErrPrecondition) {
						conflicts.Add(1)
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("increment: %v", err)
	}
	got := mustGet(t, tbl, "p", "counter").Props["n"]
	if got != int64(workers*each) {
		t.Errorf("counter: got %v, want %d", got, workers*each)
	}
	t.Logf("%d increments, %d ETag conflicts", workers*each, conflicts.Load())
}
