package utilization

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
)

// Table is the table (before the configured prefix) where instances share
// their header samples: partition "load", one row per instance, property
// Samples holding a JSON list of {b: backend, d: deployment, p: percent,
// t: sample time, u: when the sample's rate-limit window resets (omitted
// when the response gave no x-ratelimit-reset-*)}, and WrittenAt.
const Table = "DeploymentLoad"

const fleetPartition = "load"

// sample is one deployment's entry in an instance's row.
type sample struct {
	Backend    string    `json:"b"`
	Deployment string    `json:"d"`
	Percent    float64   `json:"p"`
	At         time.Time `json:"t"`
	// Until is the sample's window reset (Reading.Until), so every
	// instance knows when a busy sample ends.
	Until time.Time `json:"u,omitzero"`
}

// FleetOptions tune a Fleet.
type FleetOptions struct {
	// Instance names this instance's row. Required.
	Instance string
	// Every is the publish period; at least 1s. Default 1s.
	Every time.Duration
	// ReadEvery: the fleet view is re-read at most this often. Default 500ms.
	ReadEvery time.Duration
	// RowMaxAge: rows not written for this long are ignored (and deleted
	// by the instance that notices). Default 10m.
	RowMaxAge time.Duration
	Log       *slog.Logger
	Now       func() time.Time
}

// Fleet publishes this instance's header samples and reads every
// instance's. Safe for concurrent use.
type Fleet struct {
	t      store.Table
	source func() map[Key]Reading
	opt    FleetOptions

	pubMu     sync.Mutex
	published map[Key]time.Time

	mu     sync.Mutex
	view   map[Key]Reading
	readAt time.Time
	err    error
}

// NewFleet builds a Fleet over t; source lists this instance's newest
// header samples.
func NewFleet(t store.Table, source func() map[Key]Reading, opt FleetOptions) *Fleet {
	if opt.Every < time.Second {
		opt.Every = time.Second
	}
	if opt.ReadEvery <= 0 {
		opt.ReadEvery = 500 * time.Millisecond
	}
	if opt.RowMaxAge <= 0 {
		opt.RowMaxAge = 10 * time.Minute
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Fleet{t: t, source: source, opt: opt, published: map[Key]time.Time{}}
}

// Publish writes this instance's samples if any is newer than what it last
// wrote. It reports whether it wrote.
func (f *Fleet) Publish(ctx context.Context) (bool, error) {
	f.pubMu.Lock()
	defer f.pubMu.Unlock()
	cur := f.source()
	changed := false
	list := make([]sample, 0, len(cur))
	for k, r := range cur {
		if r.Percent < 0 {
			continue // capacity unknown: not a utilization
		}
		if r.At.After(f.published[k]) {
			changed = true
		}
		s := sample{Backend: k.Backend, Deployment: k.Deployment, Percent: r.Percent, At: r.At.UTC()}
		if !r.Until.IsZero() {
			s.Until = r.Until.UTC()
		}
		list = append(list, s)
	}
	if !changed {
		return false, nil
	}
	b, err := json.Marshal(list)
	if err != nil {
		return false, err
	}
	if _, err := f.t.Upsert(ctx, store.Entity{PartitionKey: fleetPartition, RowKey: f.opt.Instance,
		Props: map[string]any{"Samples": string(b), "WrittenAt": f.opt.Now().UTC()}}); err != nil {
		return false, fmt.Errorf("publish deployment load: %w", err)
	}
	for _, s := range list {
		f.published[Key{s.Backend, s.Deployment}] = s.At
	}
	return true, nil
}

// Run publishes every opt.Every until ctx ends.
func (f *Fleet) Run(ctx context.Context) error {
	t := time.NewTicker(f.opt.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := f.Publish(ctx); err != nil && ctx.Err() == nil {
			f.opt.Log.Warn("utilization: publish samples", "error", err)
		}
	}
}

// Refresh re-reads the fleet's rows when the view is older than ReadEvery.
// On a read error the previous view stays (its samples age out on their own).
func (f *Fleet) Refresh(ctx context.Context) error {
	f.mu.Lock()
	if f.opt.Now().Sub(f.readAt) < f.opt.ReadEvery {
		err := f.err
		f.mu.Unlock()
		return err
	}
	f.readAt = f.opt.Now()
	f.mu.Unlock()
	es, err := f.t.Query(ctx, store.Query{PartitionKey: fleetPartition})
	if err != nil {
		f.mu.Lock()
		f.err = fmt.Errorf("read deployment load: %w", err)
		f.mu.Unlock()
		return f.err
	}
	view := map[Key]Reading{}
	now := f.opt.Now()
	for _, e := range es {
		if e.RowKey == f.opt.Instance {
			continue // this instance's own samples are read live, not from the table
		}
		if w, _ := e.Props["WrittenAt"].(time.Time); now.Sub(w) > f.opt.RowMaxAge {
			// A stopped instance's row; whoever sees it first removes it.
			if err := f.t.Delete(ctx, e.PartitionKey, e.RowKey, e.ETag); err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrPrecondition) {
				f.opt.Log.Warn("utilization: delete stale load row", "instance", e.RowKey, "error", err)
			}
			continue
		}
		raw, _ := e.Props["Samples"].(string)
		var list []sample
		if err := json.Unmarshal([]byte(raw), &list); err != nil {
			f.opt.Log.Warn("utilization: unreadable load row", "instance", e.RowKey, "error", err)
			continue
		}
		for _, s := range list {
			k := Key{s.Backend, s.Deployment}
			if old, ok := view[k]; !ok || s.At.After(old.At) {
				view[k] = Reading{Percent: s.Percent, Source: SourceFleet, At: s.At, Until: s.Until}
			}
		}
	}
	f.mu.Lock()
	f.view, f.err = view, nil
	f.mu.Unlock()
	return nil
}

// Get returns the newest sample any instance published for k (as of the
// last Refresh).
func (f *Fleet) Get(k Key) (Reading, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.view[k]
	return r, ok
}
