package jobs

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/utilization"
)

// clockLoads is a fake Loads whose one reading is stamped with the
// fixture's clock; a negative share reads unknown.
type clockLoads struct {
	mu    sync.Mutex
	share float64
	at    time.Time
	until time.Time
	cap   float64 // Reading.Capacity
}

func (c *clockLoads) set(share float64, at, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.share, c.at, c.until = share, at, until
}

func (c *clockLoads) Utilization(utilization.Key, float64) utilization.Reading {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.share < 0 {
		return utilization.Reading{Source: utilization.SourceUnknown}
	}
	return utilization.Reading{Percent: 100 * c.share, Source: utilization.SourceHeaders, At: c.at, Until: c.until, Capacity: c.cap}
}

func (c *clockLoads) Refresh(context.Context) error { return nil }

// TestJobsReplaceTheirOwnAsTheyLeaveTheWindow: after the drain's own jobs
// took a deployment past the threshold, new jobs start as soon as (and only
// as far as) its own jobs have left the sliding window, not when the whole
// window has emptied; a probe is never replaced, and nothing is replaced
// while the deployment reads past halfway from the threshold to full.
func TestJobsReplaceTheirOwnAsTheyLeaveTheWindow(t *testing.T) {
	loads := &clockLoads{}
	f, be := twoTargetFixture(t, loads, []utilization.Key{keyPTU}, 0)
	f.d.opt.Window = 2 * time.Second
	f.d.opt.BusyDelay = 20 * time.Millisecond
	f.d.opt.Concurrency = 8
	t0 := f.clock.Now()
	loads.set(0.1, t0, time.Time{})
	for range 3 {
		f.submit(t, "")
	}
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 3 {
		t.Fatalf("idle: round %v; want 3", st)
	}
	// Those 3 took the deployment to 75% (threshold 70%).
	loads.set(0.75, t0, time.Time{})
	for range 5 {
		f.submit(t, "")
	}
	f.clock.Advance(1500 * time.Millisecond)
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 0 {
		t.Fatalf("busy, own jobs still in the window: round %v; want none", st)
	}
	// 2.1s after they were sent all 3 have left the window: 3 may take
	// their place (each costs what they did, 2 tokens), no more.
	f.clock.Advance(600 * time.Millisecond)
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 3 || be.count("ptu") != 6 {
		t.Fatalf("own jobs left the window: round %v, calls %d; want 3 more", st, be.count("ptu"))
	}
	// Busy past halfway to full (85%): others' traffic grew into the room.
	t1 := f.clock.Now()
	loads.set(0.9, t1, time.Time{})
	f.clock.Advance(2100 * time.Millisecond)
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 0 {
		t.Fatalf("busy at 90%%: round %v; want none", st)
	}
	// A probe (no fresh reading) that read busy is not replaced when it leaves.
	loads.set(-1, time.Time{}, time.Time{})
	f.clock.Advance(10 * time.Second)
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 1 {
		t.Fatalf("unknown: round %v; want one probe", st)
	}
	loads.set(0.75, f.clock.Now(), time.Time{})
	f.clock.Advance(2100 * time.Millisecond)
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 0 || be.count("ptu") != 7 {
		t.Fatalf("the probe left the window: round %v, calls %d; want none in its place", st, be.count("ptu"))
	}
}

// TestOwnWindowLearnedFromReset: the window is the smallest bound the
// resets read after the drain's jobs give (reset time − sent), else the
// configured one.
func TestOwnWindowLearnedFromReset(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o := &ownLoad{jobs: []*ownJob{
		{sent: t0, done: true, tokens: 10, window: 2100 * time.Millisecond},
		{sent: t0.Add(100 * time.Millisecond), done: true, tokens: 10, window: 2050 * time.Millisecond},
		{sent: t0.Add(200 * time.Millisecond), done: true, tokens: 10},
	}, busyAt: t0.Add(300 * time.Millisecond), busyPct: 75}
	if w := o.windowOf(time.Minute); w != 2050*time.Millisecond {
		t.Fatalf("window %v; want the smallest bound 2.05s", w)
	}
	// At t0+2.1s the first job (sent t0) has left; the second leaves at t0+2.15s.
	a, next := o.allowance(t0.Add(2100*time.Millisecond), time.Minute)
	if a != 10 || !next.Equal(t0.Add(2150*time.Millisecond)) {
		t.Errorf("allowance %v, next %v; want 10 tokens, next at t0+2.15s", a, next)
	}
	if w := (&ownLoad{}).windowOf(time.Minute); w != time.Minute {
		t.Errorf("nothing learned: window %v; want the configured 1m", w)
	}
}

// TestSlotsFromTokenHeadroom: near the threshold, a reading that knows the
// window's size in tokens lets as many jobs run at once as fit below the
// threshold at what the drain's jobs cost, not one at a time.
func TestSlotsFromTokenHeadroom(t *testing.T) {
	for _, tt := range []struct {
		cap      float64
		min, max int32
	}{{0, 1, 1}, {1000, 3, 8}} {
		loads := &clockLoads{}
		f, be := twoTargetFixture(t, loads, []utilization.Key{keyPTU}, 150*time.Millisecond)
		f.d.opt.Concurrency = 8
		loads.set(0.1, f.clock.Now(), time.Time{})
		f.submit(t, "") // learns what a job costs (2 tokens)
		if st, _ := f.d.Drain(context.Background()); st.Succeeded != 1 {
			t.Fatalf("first job: %v", st)
		}
		be.peak.Store(0)
		// 60% of a 1,000-token window, threshold 70%: room for 50 jobs of 2 tokens.
		loads.mu.Lock()
		loads.share, loads.at, loads.cap = 0.6, f.clock.Now(), tt.cap
		loads.mu.Unlock()
		for range 12 {
			f.submit(t, "")
		}
		if st, _ := f.d.Drain(context.Background()); st.Succeeded != 12 {
			t.Fatalf("capacity %v: round %v", tt.cap, st)
		}
		if got := be.peak.Load(); got < tt.min || got > tt.max {
			t.Errorf("capacity %v: peak concurrency %d, want %d..%d", tt.cap, got, tt.min, tt.max)
		}
	}
}
