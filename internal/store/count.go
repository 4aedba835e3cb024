package store

import (
	"context"
	"sync/atomic"
)

// Ops counts table operations: one per Get, Insert, Update, Upsert, Delete,
// Query and Batch call, as Azure Table Storage would bill and serve them
// (one HTTP request each; an entity group transaction is one request). The
// embedded store's BatchAll commits several batches at once but counts one
// operation per batch, what the same writes cost on Azure.
type Ops struct{ n atomic.Int64 }

// Load returns the operations counted so far.
func (o *Ops) Load() int64 { return o.n.Load() }

// Counted returns s with every table operation counted in o. Tables that
// commit several batches at once (BatchAll) keep that ability.
func Counted(s Store, o *Ops) Store { return countedStore{Store: s, ops: o} }

type countedStore struct {
	Store
	ops *Ops
}

func (s countedStore) Table(ctx context.Context, name string) (Table, error) {
	t, err := s.Store.Table(ctx, name)
	if err != nil {
		return nil, err
	}
	ct := countedTable{t: t, ops: s.ops}
	if mb, ok := t.(batchAller); ok {
		return countedMultiTable{countedTable: ct, mb: mb}, nil
	}
	return ct, nil
}

// batchAller is the optional multi-batch commit of the embedded store (see
// internal/ledger).
type batchAller interface {
	BatchAll(ctx context.Context, batches [][]Op) []error
}

type countedTable struct {
	t   Table
	ops *Ops
}

func (c countedTable) Get(ctx context.Context, pk, rk string) (Entity, error) {
	c.ops.n.Add(1)
	return c.t.Get(ctx, pk, rk)
}

func (c countedTable) Insert(ctx context.Context, e Entity) (string, error) {
	c.ops.n.Add(1)
	return c.t.Insert(ctx, e)
}

func (c countedTable) Update(ctx context.Context, e Entity, ifMatch string) (string, error) {
	c.ops.n.Add(1)
	return c.t.Update(ctx, e, ifMatch)
}

func (c countedTable) Upsert(ctx context.Context, e Entity) (string, error) {
	c.ops.n.Add(1)
	return c.t.Upsert(ctx, e)
}

func (c countedTable) Delete(ctx context.Context, pk, rk, ifMatch string) error {
	c.ops.n.Add(1)
	return c.t.Delete(ctx, pk, rk, ifMatch)
}

func (c countedTable) Query(ctx context.Context, q Query) ([]Entity, error) {
	c.ops.n.Add(1)
	return c.t.Query(ctx, q)
}

func (c countedTable) Batch(ctx context.Context, ops []Op) error {
	c.ops.n.Add(1)
	return c.t.Batch(ctx, ops)
}

type countedMultiTable struct {
	countedTable
	mb batchAller
}

func (c countedMultiTable) BatchAll(ctx context.Context, batches [][]Op) []error {
	c.ops.n.Add(int64(len(batches)))
	return c.mb.BatchAll(ctx, batches)
}
