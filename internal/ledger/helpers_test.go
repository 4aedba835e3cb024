package ledger

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/embedded"
	"github.com/foundry-gateway/gateway/internal/store/tables"
)

// az is the Azurite the tests of this package share (outage tests start
// their own).
var az azurite.Shared

func TestMain(m *testing.M) { os.Exit(az.Run(m)) }

var tableSeq atomic.Int64

// backends returns the stores a test runs against: the embedded store and
// Azurite (skipped in -short mode), each with fresh tables.
func backends(t *testing.T) map[string]func(t *testing.T) Tables {
	return map[string]func(t *testing.T) Tables{
		"embedded": func(t *testing.T) Tables { return embeddedTables(t) },
		"azurite": func(t *testing.T) Tables {
			st, err := tables.NewFromConnectionString(az.Start(t).ConnectionString())
			if err != nil {
				t.Fatal(err)
			}
			return openTables(t, st)
		},
	}
}

func embeddedTables(t *testing.T) Tables {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return openTables(t, st)
}

func openTables(t *testing.T, st store.Store) Tables {
	t.Helper()
	tb, err := OpenTables(context.Background(), st, fmt.Sprintf("L%d", tableSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// ev is a test event.
func ev(team, app, model string, at time.Time, i int) Event {
	p, c := int64(10+i%7), int64(5+i%11)
	return Event{Time: at, RequestID: fmt.Sprintf("%s-%s-%d-%d", team, Day(at), at.UnixNano(), i), KeyID: "k1",
		Team: team, App: app, Model: model, Class: ClassInteractive, Status: 200,
		PromptTokens: p, CachedTokens: int64(i % 3), CompletionTokens: c, TotalTokens: p + c,
		Cost: money.Nanos(p+c) * 1000, Currency: "USD", UsageSource: SourceReported}
}

// allEvents reads every stored event of the given days through the index.
func allEvents(t *testing.T, tb Tables, days ...string) []Event {
	t.Helper()
	var out []Event
	d := NewDaily(tb, nil)
	for _, day := range days {
		if err := d.dayEvents(context.Background(), day, func(e Event) { out = append(out, e) }); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// sums are the totals a comparison needs.
type sums struct {
	Events                   int
	Prompt, Completion, Cost int64 // Cost in nanos
}

func sumOf(evs []Event) sums {
	var s sums
	for _, e := range evs {
		s.Events++
		s.Prompt += e.PromptTokens
		s.Completion += e.CompletionTokens
		s.Cost += int64(e.Cost)
	}
	return s
}

// downTable wraps a table and fails every call while down is set.
type downTable struct {
	store.Table
	down *atomic.Bool
}

var errDown = fmt.Errorf("store is down (test)")

func (d downTable) Batch(ctx context.Context, ops []store.Op) error {
	if d.down.Load() {
		return errDown
	}
	return d.Table.Batch(ctx, ops)
}

func (d downTable) Upsert(ctx context.Context, e store.Entity) (string, error) {
	if d.down.Load() {
		return "", errDown
	}
	return d.Table.Upsert(ctx, e)
}

func withDown(tb Tables, down *atomic.Bool) Tables {
	return Tables{Events: downTable{tb.Events, down}, Daily: downTable{tb.Daily, down},
		Index: downTable{tb.Index, down}, Dirty: downTable{tb.Dirty, down}}
}
