package ledger

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/foundry-gateway/gateway/internal/store"
)

// Partial sums.
//
// Every Writer keeps, for each (day, team, app, model, class) it has
// written, the running sums of the events it wrote, and stores them as a
// "partial row" in the events' own UsageEvents partition, in the same entity
// group transaction as the events. Rows of one partition share a
// transaction, so a partial row always equals the sum of the events that
// reached the table through it: a hard kill, a failed or ambiguous
// transaction, or a spool replay can never make the sums and the events
// disagree.
//
// We chose per-instance rows summed on read over one ETag-merged row per
// group: a transaction cannot carry an If-Match for a row another instance
// also writes, so a shared row would need a read-modify-write outside the
// events' transaction (an extra table operation per flush and a window where
// events and sums disagree). With per-instance rows every row has one
// writer, each flush costs no extra operation (the rows ride in the events'
// batches), and a rollup or a report reads O(groups × instances) rows
// instead of every event.
//
// Row keys: "|sum|<instance>.<slot>|<app>|<model>|<class>" (EncodeKey'd
// parts; a long group is hashed). "|" is never left bare by EncodeKey, so no
// request id can collide, and the rows of a partition are read with one
// range query. A slot is the position of a batch in one multi-batch commit:
// batches of the same partition committed together each update their own
// row, so one failing while the other succeeds cannot skew a sum.
const (
	partialPrefix = "|sum|"
	partialEnd    = "|sum}"
	// rebuildInstance names the correction rows `usage rebuild` writes.
	rebuildInstance = "rebuild"
)

// isPartialKey reports whether rk is a partial row (not an event).
func isPartialKey(rk string) bool { return strings.HasPrefix(rk, partialPrefix) }

// groupKey is the (app, model, class) part of a partial row key.
func groupKey(app, model string, class Class) string {
	k := EncodeKey(app) + "|" + EncodeKey(model) + "|" + EncodeKey(string(class))
	if len(k) > 400 { // Azure keys are at most 1 KiB of UTF-16
		h := sha256.Sum256([]byte(app + "\x00" + model + "\x00" + string(class)))
		k = "~h" + hex.EncodeToString(h[:16])
	}
	return k
}

func partialRowKey(instance string, slot int, group string) string {
	return fmt.Sprintf("%s%s.%d|%s", partialPrefix, instance, slot, group)
}

// newInstanceID is a random id for one Writer: its partial rows have no
// other writer, so it never needs to read them back unless a write failed.
func newInstanceID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// partialEntity is the stored form of a partial row: the UsageDaily
// columns plus Instance.
func partialEntity(pk, rk, instance string, r DailyRow) store.Entity {
	en := r.entity()
	en.PartitionKey, en.RowKey = pk, rk
	delete(en.Props, "UpdatedAt")
	en.Props["Instance"] = instance
	return en
}

// groupOf is the partial-sum group of e, as a DailyRow with no counts.
func groupOf(e Event) DailyRow {
	return DailyRow{Date: Day(e.Time), Team: e.Team, App: e.App, Model: e.Model, Class: e.Class}
}

// partialState is a Writer's knowledge of one of its partial rows.
type partialState struct {
	row DailyRow
	// stale: a write of the row failed, so whether it committed is unknown;
	// the row is read back before its next write.
	stale bool
}

// errDuplicate marks a batch refused because one of its events is stored
// already (a retried transaction that had in fact committed, a spool replay).
var errDuplicate = errors.New("ledger: event already stored")

// base returns the stored sums of partial row (pk, rk), from memory, or
// from the table when it may have changed behind the Writer's back.
func (w *Writer) base(ctx context.Context, pk, rk string, g DailyRow) (DailyRow, error) {
	k := pk + "\x00" + rk
	if s, ok := w.partials[k]; ok && !s.stale {
		return s.row, nil
	}
	_, known := w.partials[k]
	if !known && g.Date >= w.partialsFrom {
		return g, nil // never written by this Writer, and its instance id is new
	}
	en, err := w.t.Events.Get(ctx, pk, rk)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return g, nil
	case err != nil:
		return DailyRow{}, fmt.Errorf("read partial sums %s: %w", rk, err)
	}
	r := dailyFrom(en)
	w.partials[k] = &partialState{row: r}
	return r, nil
}

// addPartials appends to b the partial rows of its events (slot slot) and
// keeps their new values in b.next, committed to memory only when b is.
func (w *Writer) addPartials(ctx context.Context, b *batch, slot int) error {
	type acc struct {
		rk  string
		row DailyRow
	}
	by := map[string]*acc{}
	var order []string
	gks := groupKeys{}
	for _, e := range b.evs {
		gk := gks.of(e)
		a := by[gk]
		if a == nil {
			g := groupOf(e)
			rk := partialRowKey(w.instance, slot, gk)
			base, err := w.base(ctx, b.pk, rk, g)
			if err != nil {
				return err
			}
			a = &acc{rk: rk, row: base}
			by[gk] = a
			order = append(order, gk)
		}
		a.row.add(e)
	}
	b.next = make(map[string]DailyRow, len(order))
	for _, gk := range order {
		a := by[gk]
		b.ops = append(b.ops, store.Op{Kind: store.OpUpsert, Entity: partialEntity(b.pk, a.rk, w.instance, a.row)})
		b.next[b.pk+"\x00"+a.rk] = a.row
	}
	return nil
}

// committed records b's partial rows as stored.
func (w *Writer) committed(b batch) {
	for k, r := range b.next {
		w.partials[k] = &partialState{row: r}
	}
}

// uncertain marks b's partial rows as unknown: read them back before the
// next write (the transaction may have committed though it reported an
// error).
func (w *Writer) uncertain(b batch) {
	for k, r := range b.next {
		if s, ok := w.partials[k]; ok {
			s.stale = true
			continue
		}
		w.partials[k] = &partialState{row: r, stale: true}
	}
}

// forgetOldPartials drops the partial rows of days before keepFrom from
// memory; a late event of such a day reads its row back first.
func (w *Writer) forgetOldPartials(keepFrom string) {
	if keepFrom <= w.partialsFrom {
		return
	}
	for k, s := range w.partials {
		if s.row.Date < keepFrom {
			delete(w.partials, k)
		}
	}
	w.partialsFrom = keepFrom
}

// dropStored returns the events of evs that are not stored yet: one Get
// each, 16 at a time (only after a transaction was refused for a
// duplicate, so rare; a batch is at most 100 rows).
func (w *Writer) dropStored(ctx context.Context, evs []Event) ([]Event, int, error) {
	stored := make([]bool, len(evs))
	errs := make([]error, len(evs))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, e := range evs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, err := w.t.Events.Get(ctx, e.PartitionKey(), e.RowKey())
			switch {
			case err == nil:
				stored[i] = true
			case !errors.Is(err, store.ErrNotFound):
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	var out []Event
	for i, e := range evs {
		if !stored[i] {
			out = append(out, e)
		}
	}
	return out, len(evs) - len(out), nil
}
