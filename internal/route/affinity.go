package route

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/rules"
)

// AffinityTable is the table of response id → backend (without the
// configured prefix). PartitionKey is the first two hex characters of the
// SHA-256 of the id (256 partitions), RowKey the response id; properties
// Backend (string), ExpiresAt (time) and Owner (string: the caller id that
// created it; absent in rows written before it was kept). Rows past
// ExpiresAt are ignored.
const AffinityTable = "ResponseAffinity"

// AffinityOptions tune an [Affinity]. Zero values take the defaults noted.
type AffinityOptions struct {
	// TTL of a recorded id. Default 30 days.
	TTL time.Duration
	// CacheSize is the in-memory LRU size. Default 100000.
	CacheSize int
	// WriteBuffer is the number of pending writes. Default 4096.
	WriteBuffer int
	// ReadTimeout bounds a store read on a cache miss. Default 2s.
	ReadTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Affinity remembers which backend created each Responses API response,
// so a call continuing it (previous_response_id) goes back there, from any
// instance. Writes never wait on the store: Remember queues the row for
// the writer ([Affinity.Run]) and drops it, counted, when the queue is
// full. Lookups hit an in-memory LRU first and read the store on a miss.
// Safe for concurrent use.
type Affinity struct {
	t   store.Table
	log *slog.Logger
	opt AffinityOptions

	writes  chan affinityRow
	dropped atomic.Int64
	failed  atomic.Int64

	mu    sync.Mutex
	items map[string]*list.Element
	order *list.List // front = most recent; values are *affinityRow
}

type affinityRow struct {
	id, backend, owner string
	expires            time.Time
}

// NewAffinity returns an Affinity over t (the AffinityTable).
func NewAffinity(t store.Table, log *slog.Logger, opt AffinityOptions) *Affinity {
	if opt.TTL <= 0 {
		opt.TTL = 30 * 24 * time.Hour
	}
	if opt.CacheSize <= 0 {
		opt.CacheSize = 100000
	}
	if opt.WriteBuffer <= 0 {
		opt.WriteBuffer = 4096
	}
	if opt.ReadTimeout <= 0 {
		opt.ReadTimeout = 2 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Affinity{t: t, log: log, opt: opt, writes: make(chan affinityRow, opt.WriteBuffer),
		items: map[string]*list.Element{}, order: list.New()}
}

// Remember records that backend created the response id for the caller
// owner. It never blocks.
func (a *Affinity) Remember(id, backend, owner string) {
	if id == "" || rules.Key(id) != nil {
		return
	}
	row := affinityRow{id: id, backend: backend, owner: owner, expires: a.opt.Now().Add(a.opt.TTL)}
	a.put(row)
	select {
	case a.writes <- row:
	default:
		if n := a.dropped.Add(1); n&(n-1) == 0 { // log at 1, 2, 4, 8, … drops
			a.log.Warn("response affinity write dropped: buffer full", "dropped_total", n)
		}
	}
}

// Lookup returns the backend that created the response id: from memory,
// else from the store (one read per id and instance). ok is false when
// the id is unknown, expired or the store cannot be read in time.
func (a *Affinity) Lookup(ctx context.Context, id string) (string, bool) {
	backend, _, ok := a.LookupOwner(ctx, id)
	return backend, ok
}

// LookupOwner is Lookup that also returns the caller id that created the
// response ("" for rows written before owners were kept).
func (a *Affinity) LookupOwner(ctx context.Context, id string) (backend, owner string, ok bool) {
	if id == "" || rules.Key(id) != nil {
		return "", "", false
	}
	now := a.opt.Now()
	a.mu.Lock()
	if el, ok := a.items[id]; ok {
		row := el.Value.(*affinityRow)
		if now.Before(row.expires) {
			a.order.MoveToFront(el)
			a.mu.Unlock()
			return row.backend, row.owner, true
		}
	}
	a.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, a.opt.ReadTimeout)
	defer cancel()
	e, err := a.t.Get(rctx, partitionOf(id), id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
			a.log.Warn("response affinity read failed", "error", err)
		}
		return "", "", false
	}
	backend, _ = e.Props["Backend"].(string)
	owner, _ = e.Props["Owner"].(string)
	expires, _ := e.Props["ExpiresAt"].(time.Time)
	if backend == "" || !now.Before(expires) {
		return "", "", false
	}
	a.put(affinityRow{id: id, backend: backend, owner: owner, expires: expires})
	return backend, owner, true
}

func (a *Affinity) put(row affinityRow) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if el, ok := a.items[row.id]; ok {
		*el.Value.(*affinityRow) = row
		a.order.MoveToFront(el)
		return
	}
	a.items[row.id] = a.order.PushFront(&row)
	for a.order.Len() > a.opt.CacheSize {
		last := a.order.Back()
		a.order.Remove(last)
		delete(a.items, last.Value.(*affinityRow).id)
	}
}

// Dropped is the number of writes dropped because the buffer was full.
func (a *Affinity) Dropped() int64 { return a.dropped.Load() }

// Run writes queued rows until ctx ends, then flushes what is queued (for
// up to five seconds). A failed write is logged and not retried: the cost
// is one conversation continued on another instance landing on the wrong
// backend, which answers 400.
func (a *Affinity) Run(ctx context.Context) error {
	for {
		select {
		case row := <-a.writes:
			a.write(ctx, row)
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			for {
				select {
				case row := <-a.writes:
					a.write(fctx, row)
				default:
					return nil
				}
			}
		}
	}
}

func (a *Affinity) write(ctx context.Context, row affinityRow) {
	e := store.Entity{PartitionKey: partitionOf(row.id), RowKey: row.id, Props: map[string]any{
		"Backend": row.backend, "ExpiresAt": rules.Time(row.expires),
	}}
	if row.owner != "" {
		e.Props["Owner"] = row.owner
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := a.t.Upsert(wctx, e); err != nil {
		n := a.failed.Add(1)
		a.log.Warn("response affinity write failed", "error", err, "failed_total", n)
	}
}

func partitionOf(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:1])
}
