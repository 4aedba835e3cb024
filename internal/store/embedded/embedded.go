package embedded

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/bbolt"

	"github.com/foundry-gateway/gateway/internal/boltfile"
	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/rules"
)

// Interface guards.
var (
	_ store.Store = (*Store)(nil)
	_ store.Table = (*table)(nil)
)

// ErrLocked: another process (a running gateway) holds the store file's
// lock.
var ErrLocked = boltfile.ErrLocked

// openTimeout bounds the wait for the file lock held by another process that
// has the same file open.
const openTimeout = 2 * time.Second

// Store is a store.Store kept in one bbolt file. It is safe for concurrent
// use: reads run in parallel and writes are serialised by bbolt.
type Store struct {
	db  *bbolt.DB
	now func() time.Time // clock for Timestamp
	// meter counts the bytes read and written through the file's memory
	// map; each time they reach its budget the map is released from RSS
	// (boltfile.Release), so the file's share of the process's memory stays
	// about the budget whatever the file's size.
	meter *boltfile.Meter
}

// Open opens (or creates) the store file at path. Only one process may have
// it open at a time; Open fails after a few seconds if another one does.
func Open(path string) (*Store, error) { return OpenWait(path, openTimeout) }

// OpenWait is Open with its own bound on the wait for the file lock (the
// CLI waits briefly, then uses the running gateway's admin API).
func OpenWait(path string, wait time.Duration) (*Store, error) {
	db, err := boltfile.Open(path, "embedded store", wait) // errors name the file and what to do
	if err != nil {
		return nil, err
	}
	return &Store{db: db, now: time.Now, meter: boltfile.NewMeter(0)}, nil
}

// touched counts n bytes read through the map inside tx and releases the
// map when the meter's budget is spent.
func (s *Store) touched(tx *bbolt.Tx, n int64) {
	if s.meter.Add(n) {
		_ = boltfile.Release(tx) // only RSS is at stake: a failure changes nothing else
		s.meter.Released()
	}
}

// Close closes the file. Calls on the store or its tables after Close fail.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("embedded: close: %w", err)
	}
	return nil
}

// Ping implements [store.Store.Ping]: it checks the file is open.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("embedded: ping: %w", err)
	}
	if err := s.db.View(func(*bbolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("embedded: ping: %w", err)
	}
	return nil
}

// Table implements [store.Store.Table]: it creates the table's bucket when
// missing. Table names are case-insensitive, as on Azure.
func (s *Store) Table(ctx context.Context, name string) (store.Table, error) {
	canon, err := rules.Table(name)
	if err != nil {
		return nil, fmt.Errorf("embedded: table: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("embedded: table %s: %w", canon, err)
	}
	t := &table{s: s, name: canon, bucket: []byte(canon)}
	var exists bool
	err = s.db.View(func(tx *bbolt.Tx) error {
		exists = tx.Bucket(t.bucket) != nil
		return nil
	})
	if err == nil && !exists {
		err = s.db.Update(func(tx *bbolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(t.bucket)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("embedded: table %s: %w", canon, err)
	}
	return t, nil
}

// table is one bucket.
type table struct {
	s      *Store
	name   string
	bucket []byte
}

// rowKey is the bucket key of a row. Keys cannot contain U+0000 (rules.Key),
// so the separator keeps bbolt's byte order equal to (PartitionKey, RowKey)
// order.
func rowKey(pk, rk string) []byte {
	k := make([]byte, 0, len(pk)+1+len(rk))
	k = append(k, pk...)
	k = append(k, 0)
	return append(k, rk...)
}

func splitKey(k []byte) (pk, rk string) {
	i := bytes.IndexByte(k, 0)
	return string(k[:i]), string(k[i+1:])
}

// view runs fn on the table's bucket in a read transaction.
func (t *table) view(ctx context.Context, fn func(b *bbolt.Bucket) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return t.s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(t.bucket)
		if b == nil {
			return fmt.Errorf("table %s is gone: %w", t.name, store.ErrNotFound)
		}
		return fn(b)
	})
}

// pageBytes is what the descent of a put (and a small query) is counted as
// by the release meter: not one 4 KiB page but at least the kernel's
// fault-around (a read fault of a file map maps up to 16 neighbouring
// pages already in the page cache, 64 KiB, whatever MADV_RANDOM says; large
// page-cache folios map more), which is what a read of a random leaf costs
// in RSS. The Meter measures the RSS itself; the count only paces its reads.
const pageBytes = 64 << 10 // a count for the Meter, which measures what is resident

// update runs fn on the table's bucket in a write transaction; an error
// rolls back everything fn did.
func (t *table) update(ctx context.Context, fn func(b *bbolt.Bucket) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var written int64
	err := t.s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(t.bucket)
		if b == nil {
			return fmt.Errorf("table %s is gone: %w", t.name, store.ErrNotFound)
		}
		// The pages a commit writes are new page ids that the next reads
		// fault in: count them.
		tx.OnCommit(func() { st := tx.Stats(); written = st.GetPageAlloc() })
		return fn(b)
	})
	if written > 0 && t.s.meter.Add(written) {
		_ = t.s.db.View(boltfile.Release)
		t.s.meter.Released()
	}
	return err
}

// put writes props as row (pk, rk) with a new ETag and Timestamp.
func (t *table) put(b *bbolt.Bucket, pk, rk string, props map[string]any) (string, error) {
	seq, err := b.NextSequence()
	if err != nil {
		return "", err
	}
	etag := `W/"` + strconv.FormatUint(seq, 10) + `"`
	v := appendRecord(make([]byte, 0, recordSize(etag, props)), etag, t.s.now().UTC().UnixNano(), props)
	if err := b.Put(rowKey(pk, rk), v); err != nil {
		return "", err
	}
	return etag, nil
}

// current reads row (pk, rk), or returns ok false.
func current(b *bbolt.Bucket, pk, rk string) (rec record, ok bool, err error) {
	v := b.Get(rowKey(pk, rk))
	if v == nil {
		return record{}, false, nil
	}
	rec, err = unmarshalRecord(v)
	return rec, err == nil, err
}

// checkIfMatch applies an If-Match to the current row. A concrete ETag on a
// missing row is a failed precondition, as Azurite (and RFC 7232) answer; "*"
// on a missing row is not found.
func checkIfMatch(cur record, exists bool, ifMatch string) error {
	switch {
	case !exists && ifMatch == "*":
		return store.ErrNotFound
	case !exists:
		return fmt.Errorf("row is missing: %w", store.ErrPrecondition)
	case ifMatch != "*" && ifMatch != cur.ETag:
		return store.ErrPrecondition
	}
	return nil
}

func (t *table) errorf(op, pk, rk string, err error) error {
	return fmt.Errorf("embedded: %s %s(%.64q, %.64q): %w", op, t.name, pk, rk, err)
}

// Get implements [store.Table.Get].
func (t *table) Get(ctx context.Context, pk, rk string) (store.Entity, error) {
	if err := rules.Keys(pk, rk); err != nil {
		return store.Entity{}, t.errorf("get", pk, rk, err)
	}
	var e store.Entity
	err := t.view(ctx, func(b *bbolt.Bucket) error {
		t.s.touched(b.Tx(), 4096) // a get mostly reads hot rows (keys, counters): one page
		rec, ok, err := current(b, pk, rk)
		if err != nil {
			return err
		}
		if !ok {
			return store.ErrNotFound
		}
		e = rec.entity(pk, rk)
		return nil
	})
	if err != nil {
		return store.Entity{}, t.errorf("get", pk, rk, err)
	}
	return e, nil
}

// Insert implements [store.Table.Insert].
func (t *table) Insert(ctx context.Context, e store.Entity) (string, error) {
	if _, err := rules.Entity(e); err != nil {
		return "", t.errorf("insert", e.PartitionKey, e.RowKey, err)
	}
	var etag string
	err := t.update(ctx, func(b *bbolt.Bucket) (err error) {
		if b.Get(rowKey(e.PartitionKey, e.RowKey)) != nil {
			return store.ErrExists
		}
		etag, err = t.put(b, e.PartitionKey, e.RowKey, e.Props)
		return err
	})
	if err != nil {
		return "", t.errorf("insert", e.PartitionKey, e.RowKey, err)
	}
	return etag, nil
}

// Update implements [store.Table.Update].
func (t *table) Update(ctx context.Context, e store.Entity, ifMatch string) (string, error) {
	if _, err := rules.Entity(e); err != nil {
		return "", t.errorf("update", e.PartitionKey, e.RowKey, err)
	}
	if err := rules.ETag(ifMatch); err != nil {
		return "", t.errorf("update", e.PartitionKey, e.RowKey, err)
	}
	var etag string
	err := t.update(ctx, func(b *bbolt.Bucket) error {
		cur, ok, err := current(b, e.PartitionKey, e.RowKey)
		if err != nil {
			return err
		}
		if err := checkIfMatch(cur, ok, ifMatch); err != nil {
			return err
		}
		etag, err = t.put(b, e.PartitionKey, e.RowKey, e.Props)
		return err
	})
	if err != nil {
		return "", t.errorf("update", e.PartitionKey, e.RowKey, err)
	}
	return etag, nil
}

// Upsert implements [store.Table.Upsert].
func (t *table) Upsert(ctx context.Context, e store.Entity) (string, error) {
	if _, err := rules.Entity(e); err != nil {
		return "", t.errorf("upsert", e.PartitionKey, e.RowKey, err)
	}
	var etag string
	err := t.update(ctx, func(b *bbolt.Bucket) (err error) {
		etag, err = t.put(b, e.PartitionKey, e.RowKey, e.Props)
		return err
	})
	if err != nil {
		return "", t.errorf("upsert", e.PartitionKey, e.RowKey, err)
	}
	return etag, nil
}

// Delete implements [store.Table.Delete].
func (t *table) Delete(ctx context.Context, pk, rk, ifMatch string) error {
	if err := rules.Keys(pk, rk); err != nil {
		return t.errorf("delete", pk, rk, err)
	}
	if err := rules.ETag(ifMatch); err != nil {
		return t.errorf("delete", pk, rk, err)
	}
	err := t.update(ctx, func(b *bbolt.Bucket) error {
		cur, ok, err := current(b, pk, rk)
		if err != nil {
			return err
		}
		if err := checkIfMatch(cur, ok, ifMatch); err != nil {
			return err
		}
		return b.Delete(rowKey(pk, rk))
	})
	if err != nil {
		return t.errorf("delete", pk, rk, err)
	}
	return nil
}

// Query implements [store.Table.Query].
func (t *table) Query(ctx context.Context, q store.Query) ([]store.Entity, error) {
	if err := rules.Query(q); err != nil {
		return nil, fmt.Errorf("embedded: query %s: %w", t.name, err)
	}
	var out []store.Entity
	err := t.view(ctx, func(b *bbolt.Bucket) error {
		var scanned int64 // bytes read through the map, counted every 256 KiB
		defer func() { t.s.touched(b.Tx(), scanned+pageBytes) }()
		c := b.Cursor()
		var k, v []byte
		var end []byte // exclusive upper bound of keys, nil for none
		if q.AllPartitions {
			k, v = c.First()
		} else {
			k, v = c.Seek(rowKey(q.PartitionKey, q.RowKeyFrom))
			if q.RowKeyTo != "" {
				end = rowKey(q.PartitionKey, q.RowKeyTo)
			} else {
				end = []byte(q.PartitionKey + "\x01")
			}
		}
		for ; k != nil; k, v = c.Next() {
			if scanned += int64(len(k) + len(v)); scanned >= 256<<10 {
				t.s.touched(b.Tx(), scanned)
				scanned = 0
			}
			if end != nil && bytes.Compare(k, end) >= 0 {
				break
			}
			pk, rk := splitKey(k)
			if q.AllPartitions && (rk < q.RowKeyFrom || q.RowKeyTo != "" && rk >= q.RowKeyTo) {
				continue
			}
			rec, err := unmarshalRecord(v)
			if err != nil {
				return err
			}
			out = append(out, rec.entity(pk, rk))
			if q.Limit > 0 && len(out) == q.Limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: query %s: %w", t.name, err)
	}
	return out, nil
}

// Batch implements [store.Table.Batch]: all ops run in one bbolt
// transaction, which rolls back when any op fails.
func (t *table) Batch(ctx context.Context, ops []store.Op) error {
	return t.BatchAll(ctx, [][]store.Op{ops})[0]
}

// BatchAll applies several batches in one bbolt transaction and returns one
// error per batch: what Batch would have returned for it, nil when it was
// written. A batch that is invalid or whose op fails is left out (the
// transaction is retried without it); the others are committed together, or
// on a commit failure none of them.
//
// Each commit costs fsyncs, a meta and freelist write and a rewrite of the
// branch pages above the touched leaves, whatever its size, so committing
// small batches together (the usage ledger's 100-row transactions) costs
// less per row: see BenchmarkBatchUsageRows.
func (t *table) BatchAll(ctx context.Context, batches [][]store.Op) []error {
	errs := make([]error, len(batches))
	todo := make([]int, 0, len(batches))
	for i, ops := range batches {
		if err := rules.Batch(ops); err != nil {
			errs[i] = fmt.Errorf("embedded: batch %s: %w", t.name, err)
		} else if len(ops) > 0 {
			todo = append(todo, i)
		}
	}
	batchErr := func(i int, err error) error {
		return fmt.Errorf("embedded: batch %s(%q): %w", t.name, batches[i][0].Entity.PartitionKey, err)
	}
	for len(todo) > 0 {
		failed, opErr := -1, error(nil)
		err := t.update(ctx, func(b *bbolt.Bucket) error {
			for ti, i := range todo {
				for j, op := range batches[i] {
					if err := t.apply(b, op); err != nil {
						failed, opErr = ti, fmt.Errorf("op %d (%s %q): %w", j, kindName(op.Kind), op.Entity.RowKey, err)
						return opErr
					}
				}
			}
			return nil
		})
		if failed >= 0 { // that batch alone fails; retry the others without it
			errs[todo[failed]] = batchErr(todo[failed], opErr)
			todo = append(todo[:failed], todo[failed+1:]...)
			continue
		}
		if err != nil {
			for _, i := range todo {
				errs[i] = batchErr(i, err)
			}
		}
		break
	}
	return errs
}

func (t *table) apply(b *bbolt.Bucket, op store.Op) error {
	// The descent to the row's leaf reads through the map: a transaction of
	// many rows in no key order (the ledger's request ids) reads a leaf per
	// row, so the map is released inside the transaction as well.
	t.s.touched(b.Tx(), pageBytes)
	e := op.Entity
	switch op.Kind {
	case store.OpInsert:
		if b.Get(rowKey(e.PartitionKey, e.RowKey)) != nil {
			return store.ErrExists
		}
		_, err := t.put(b, e.PartitionKey, e.RowKey, e.Props)
		return err
	case store.OpUpsert:
		_, err := t.put(b, e.PartitionKey, e.RowKey, e.Props)
		return err
	case store.OpMerge:
		cur, ok, err := current(b, e.PartitionKey, e.RowKey)
		if err != nil {
			return err
		}
		props := e.Props
		if ok {
			props = cur.entity(e.PartitionKey, e.RowKey).Props
			for k, v := range e.Props {
				props[k] = v
			}
			// Azure counts the merged row against the limits.
			if _, err := rules.Entity(store.Entity{PartitionKey: e.PartitionKey, RowKey: e.RowKey, Props: props}); err != nil {
				return err
			}
		}
		_, err = t.put(b, e.PartitionKey, e.RowKey, props)
		return err
	case store.OpDelete:
		k := rowKey(e.PartitionKey, e.RowKey)
		if b.Get(k) == nil {
			return store.ErrNotFound
		}
		return b.Delete(k)
	default:
		return fmt.Errorf("%w: unknown op kind %d", store.ErrInvalid, op.Kind)
	}
}

func kindName(k store.OpKind) string {
	switch k {
	case store.OpInsert:
		return "insert"
	case store.OpUpsert:
		return "upsert"
	case store.OpMerge:
		return "merge"
	case store.OpDelete:
		return "delete"
	}
	return "op" + strconv.Itoa(int(k))
}
