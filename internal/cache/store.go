package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/usage"
)

// Table names (before the store's TablePrefix).
const (
	EntriesTable = "CacheEntries"
	VectorsTable = "CacheVectors"
)

// chunkBytes is the size of one Body property: Table Storage caps a
// binary property at 64 KiB.
const chunkBytes = 64 << 10

// Entry is one cached answer.
type Entry struct {
	// Body is the whole (JSON) answer, as the backend sent it or as
	// assembled from its stream.
	Body []byte
	// Usage is what the answer cost when it was made: the tokens a hit
	// saves.
	Usage               usage.Usage
	Op, Model           string
	Backend, Deployment string // who answered, for pricing the saving
	Created, Expires    time.Time
}

func (e *Entry) size() int64 { return int64(len(e.Body)) + 256 }

// entity is the CacheEntries row of e.
func (e *Entry) entity(pk, rk string) store.Entity {
	p := map[string]any{"Op": e.Op, "Model": e.Model, "Backend": e.Backend, "Deployment": e.Deployment,
		"Created": e.Created.UTC(), "Expires": e.Expires.UTC(),
		"PromptTokens": e.Usage.PromptTokens, "CompletionTokens": e.Usage.CompletionTokens,
		"CachedTokens": e.Usage.CachedTokens, "ReasoningTokens": e.Usage.ReasoningTokens,
		"TotalTokens": e.Usage.TotalTokens}
	n := 0
	for off := 0; off < len(e.Body); off += chunkBytes {
		p["Body"+strconv.Itoa(n)] = e.Body[off:min(off+chunkBytes, len(e.Body))]
		n++
	}
	p["BodyParts"] = int64(n)
	return store.Entity{PartitionKey: pk, RowKey: rk, Props: p}
}

func entryFrom(en store.Entity) (*Entry, error) {
	p := en.Props
	i64 := func(k string) int64 {
		switch v := p[k].(type) {
		case int64:
			return v
		case int32:
			return int64(v)
		case float64:
			return int64(v)
		}
		return 0
	}
	s := func(k string) string { v, _ := p[k].(string); return v }
	t := func(k string) time.Time { v, _ := p[k].(time.Time); return v }
	e := &Entry{Op: s("Op"), Model: s("Model"), Backend: s("Backend"), Deployment: s("Deployment"),
		Created: t("Created"), Expires: t("Expires"),
		Usage: usage.Usage{PromptTokens: i64("PromptTokens"), CompletionTokens: i64("CompletionTokens"),
			CachedTokens: i64("CachedTokens"), ReasoningTokens: i64("ReasoningTokens"), TotalTokens: i64("TotalTokens"), Reported: true}}
	for i := range int(i64("BodyParts")) {
		b, ok := p["Body"+strconv.Itoa(i)].([]byte)
		if !ok {
			return nil, fmt.Errorf("cache: entry %s/%s: body part %d missing", en.PartitionKey, en.RowKey, i)
		}
		e.Body = append(e.Body, b...)
	}
	if len(e.Body) == 0 {
		return nil, fmt.Errorf("cache: entry %s/%s: empty body", en.PartitionKey, en.RowKey)
	}
	return e, nil
}

// lru keeps entries in memory up to a total size.
type lru struct {
	mu    sync.Mutex
	max   int64
	size  int64
	order *list.List // front = most recent; values *lruItem
	items map[string]*list.Element
}

type lruItem struct {
	key string
	e   *Entry
}

func newLRU(max int64) *lru {
	return &lru{max: max, order: list.New(), items: map[string]*list.Element{}}
}

func (l *lru) get(key string) *Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.items[key]
	if !ok {
		return nil
	}
	l.order.MoveToFront(el)
	return el.Value.(*lruItem).e
}

func (l *lru) put(key string, e *Entry) {
	if e.size() > l.max {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.items[key]; ok {
		l.size -= el.Value.(*lruItem).e.size()
		l.order.Remove(el)
	}
	l.items[key] = l.order.PushFront(&lruItem{key, e})
	l.size += e.size()
	for l.size > l.max {
		el := l.order.Back()
		it := el.Value.(*lruItem)
		l.order.Remove(el)
		delete(l.items, it.key)
		l.size -= it.e.size()
	}
}

func (l *lru) drop(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.items[key]; ok {
		l.size -= el.Value.(*lruItem).e.size()
		l.order.Remove(el)
		delete(l.items, key)
	}
}

// vectorRowKey orders the newest first: inverted nanoseconds, then the key.
func vectorRowKey(created time.Time, key string) string {
	return fmt.Sprintf("%019d_%s", math.MaxInt64-created.UnixNano(), key)
}

// indexed is one vector of a partition's index.
type indexed struct {
	key, variant string
	v            vec
	created      time.Time
	expires      time.Time
}

// partIndex is the in-memory vector index of one partition and model: at
// most cap vectors, newest first, loaded from the CacheVectors table when
// first searched and topped up with newer rows every refresh.
type partIndex struct {
	// mu: searches share it (read), loads and inserts take it alone.
	mu       sync.RWMutex
	loadedAt time.Time // zero: not loaded
	failedAt time.Time // the last failed load: not retried for loadRetry
	items    []indexed // newest first
	keys     map[string]bool
}

// loadRetry is how long a partition whose load failed is searched as it
// is before its load is tried again.
const loadRetry = 5 * time.Second

// index is every partition's vector index on this instance.
type index struct {
	mu      sync.Mutex
	parts   map[string]*partIndex
	t       store.Table
	cap     int
	refresh time.Duration
}

func (x *index) part(pk string) *partIndex {
	x.mu.Lock()
	defer x.mu.Unlock()
	p := x.parts[pk]
	if p == nil {
		p = &partIndex{keys: map[string]bool{}}
		x.parts[pk] = p
	}
	return p
}

// load reads the partition's rows newer than its last load (all of them,
// up to the cap, the first time). Called with p.mu held.
func (x *index) load(ctx context.Context, pk string, p *partIndex, now time.Time) error {
	q := store.Query{PartitionKey: pk, Limit: x.cap}
	if !p.loadedAt.IsZero() {
		// Rows written since the last load, with a margin for clock skew
		// between instances.
		q.RowKeyTo = vectorRowKey(p.loadedAt.Add(-10*time.Second), "")
	}
	rows, err := x.t.Query(ctx, q)
	if err != nil {
		return err
	}
	for _, r := range rows {
		key, _ := r.Props["Key"].(string)
		variant, _ := r.Props["Variant"].(string)
		b, _ := r.Props["Vec"].([]byte)
		created, _ := r.Props["Created"].(time.Time)
		expires, _ := r.Props["Expires"].(time.Time)
		if key == "" || p.keys[key] || !expires.After(now) {
			continue
		}
		v, err := vecFrom(b)
		if err != nil {
			continue
		}
		p.add(indexed{key: key, variant: variant, v: v, created: created, expires: expires}, x.cap)
	}
	p.loadedAt = now
	return nil
}

// add puts it in order (newest first) and drops the oldest beyond cap.
func (p *partIndex) add(it indexed, cap int) {
	if p.keys[it.key] {
		return
	}
	i := sort.Search(len(p.items), func(i int) bool { return p.items[i].created.Before(it.created) })
	p.items = append(p.items, indexed{})
	copy(p.items[i+1:], p.items[i:])
	p.items[i] = it
	p.keys[it.key] = true
	for len(p.items) > cap {
		delete(p.keys, p.items[len(p.items)-1].key)
		p.items = p.items[:len(p.items)-1]
	}
}

// search returns the stored key of the same variant most similar to v,
// and its cosine similarity (-2 when there is none).
func (x *index) search(ctx context.Context, pk, variant string, v vec, now time.Time) (string, float64, error) {
	p := x.part(pk)
	stale := func() bool {
		return (p.loadedAt.IsZero() || now.Sub(p.loadedAt) >= x.refresh) && now.Sub(p.failedAt) >= loadRetry
	}
	p.mu.RLock()
	if stale() {
		p.mu.RUnlock()
		p.mu.Lock()
		if stale() { // not loaded by another search meanwhile
			if err := x.load(ctx, pk, p, now); err != nil {
				// A failing table is not asked again by every search:
				// until loadRetry has passed they use what is loaded.
				p.failedAt = now
				if p.loadedAt.IsZero() {
					p.mu.Unlock()
					return "", -2, err
				}
			}
		}
		p.mu.Unlock()
		p.mu.RLock()
	}
	defer p.mu.RUnlock()
	best, bestKey := -2.0, ""
	for _, it := range p.items {
		if it.variant != variant || !it.expires.After(now) {
			continue
		}
		if s := cosine(v, it.v); s > best {
			best, bestKey = s, it.key
		}
	}
	return bestKey, best, nil
}

// insert adds a new vector to this instance's index.
func (x *index) insert(pk string, it indexed) {
	p := x.part(pk)
	p.mu.Lock()
	p.add(it, x.cap)
	p.mu.Unlock()
}

// forget removes key from the partition's index (its entry is gone).
func (x *index) forget(pk, key string) {
	p := x.part(pk)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.keys[key] {
		return
	}
	delete(p.keys, key)
	p.items = slicesDeleteFunc(p.items, func(it indexed) bool { return it.key == key })
}

func slicesDeleteFunc(s []indexed, del func(indexed) bool) []indexed {
	out := s[:0]
	for _, it := range s {
		if !del(it) {
			out = append(out, it)
		}
	}
	return out
}

// vectorEntity is the CacheVectors row of a stored semantic entry.
func vectorEntity(pk string, it indexed) store.Entity {
	return store.Entity{PartitionKey: pk, RowKey: vectorRowKey(it.created, it.key), Props: map[string]any{
		"Key": it.key, "Variant": it.variant, "Vec": it.v.bytes(), "Dims": int64(len(it.v.q)),
		"Created": it.created.UTC(), "Expires": it.expires.UTC()}}
}

// partitionKey is the table partition of a cache partition and model.
func partitionKey(partition, model string) string {
	return keyPart(partition) + "|" + keyPart(model)
}

// isNotFound reports a missing row.
func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
