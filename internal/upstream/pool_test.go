package upstream

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// MaxIdlePerHost caps the pool; the connections over it are closed.
func TestMaxIdlePerHost(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tests := []struct {
		max, open, idle int
	}{
		{2, 5, 2},
		{0, 5, DefaultMaxIdlePerHost},
		{-1, 3, 0},
		{8, 5, 5},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("max %d, %d open", tt.max, tt.open), func(t *testing.T) {
			tr, _ := newTransport()
			tr.MaxIdlePerHost = tt.max
			accepted, closed := be.accepted.Load(), be.closed.Load()
			// Hold tt.open answers unread: each takes its own connection.
			var resps []*http.Response
			for range tt.open {
				req, _ := http.NewRequest("GET", be.URL, nil)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				resps = append(resps, resp)
			}
			for _, resp := range resps {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if n := tr.idleCount(); n != tt.idle {
				t.Errorf("idle = %d, want %d", n, tt.idle)
			}
			if n := be.accepted.Load() - accepted; n != int64(tt.open) {
				t.Errorf("accepted %d, want %d", n, tt.open)
			}
			eventually(t, "the backend to see the surplus closed", func() bool {
				return be.closed.Load()-closed == int64(tt.open-tt.idle)
			})
			tr.CloseIdleConnections()
			eventually(t, "the backend to see all closed", func() bool { return be.closed.Load()-closed == int64(tt.open) })
		})
	}
}

// An idle connection older than IdleTimeout is not reused, and the sweep
// closes it even when no call comes.
func TestIdleTimeout(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr, _ := newTransport()
	tr.IdleTimeout = 40 * time.Millisecond
	call(t, tr, "GET", be.URL, "")
	call(t, tr, "GET", be.URL, "") // within the timeout: reused
	if be.accepted.Load() != 1 {
		t.Fatalf("accepted %d, want 1", be.accepted.Load())
	}
	eventually(t, "the sweep to close the idle connection", func() bool { return be.closed.Load() == 1 })
	if tr.idleCount() != 0 {
		t.Errorf("idle = %d after the sweep", tr.idleCount())
	}
	call(t, tr, "GET", be.URL, "")
	if be.accepted.Load() != 2 {
		t.Errorf("accepted %d, want 2", be.accepted.Load())
	}
	// Expired at take time (the sweep not run yet): not reused either.
	tr.mu.Lock()
	for _, l := range tr.idle {
		for _, c := range l {
			c.since = c.since.Add(-time.Second)
		}
	}
	tr.mu.Unlock()
	call(t, tr, "GET", be.URL, "")
	if be.accepted.Load() != 3 {
		t.Errorf("accepted %d, want 3", be.accepted.Load())
	}
	tr.CloseIdleConnections()
}

// CloseIdleConnections closes the pooled connections and Fallback's, not
// the ones in use; the transport keeps working.
func TestCloseIdleConnections(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr, fb := newTransport()
	var resps []*http.Response
	for range 3 {
		req, _ := http.NewRequest("GET", be.URL, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resps = append(resps, resp)
	}
	io.Copy(io.Discard, resps[0].Body)
	io.Copy(io.Discard, resps[1].Body)
	tr.CloseIdleConnections()
	if fb.closeIdle.Load() != 1 {
		t.Error("Fallback's idle connections not closed")
	}
	eventually(t, "the backend to see two closed", func() bool { return be.closed.Load() == 2 })
	// The one in use is intact and goes back to the pool.
	if b, err := io.ReadAll(resps[2].Body); err != nil || string(b) != "ok" {
		t.Fatalf("%q %v", b, err)
	}
	if tr.idleCount() != 1 {
		t.Errorf("idle = %d, want 1", tr.idleCount())
	}
	call(t, tr, "GET", be.URL, "")
	if be.accepted.Load() != 3 {
		t.Errorf("accepted %d, want 3", be.accepted.Load())
	}
	tr.CloseIdleConnections()
	eventually(t, "all closed", func() bool { return be.closed.Load() == 3 })
}

// Many goroutines share the pool: every answer is its own request's, and
// no more connections are opened than calls run at once.
func TestConcurrent(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Query().Get("cut") == "1" {
			w.Header().Set("Content-Length", "100")
			w.Write(b) // short: the client sees a cut body
			return
		}
		w.Write(b)
	})
	tr, _ := newTransport()
	tr.MaxIdlePerHost = 4
	const workers, calls = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*calls)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				want := fmt.Sprintf("worker %d call %d %s", w, i, strings.Repeat("z", (w*calls+i)%3000))
				u := be.URL
				cut := i%7 == 3
				if cut {
					u += "?cut=1"
				}
				req, _ := http.NewRequest("POST", u, strings.NewReader(want))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					errs <- err
					continue
				}
				if i%5 == 4 { // abandon some answers unread
					resp.Body.Close()
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case cut && err == nil && len(want) < 100:
					errs <- fmt.Errorf("cut answer read without error")
				case !cut && (err != nil || string(b) != want):
					errs <- fmt.Errorf("got %.40q %v, want %.40q", b, err, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := be.accepted.Load(); n > workers*calls/2 {
		t.Errorf("accepted %d connections for %d calls by %d workers", n, workers*calls, workers)
	}
	if n := tr.idleCount(); n > 4 {
		t.Errorf("idle = %d over the cap", n)
	}
	tr.CloseIdleConnections()
}

// Close from another goroutine ends a Read blocked on the backend.
func TestCloseUnblocksRead(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		<-release
	})
	tr, _ := newTransport()
	req, _ := http.NewRequest("GET", be.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(buf)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	resp.Body.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Read returned no error after Close")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not end the blocked Read")
	}
	if tr.idleCount() != 0 {
		t.Error("pooled")
	}
}

// The zero Transport works: it pools (DefaultMaxIdlePerHost) and reuses.
func TestZeroValue(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	var tr Transport
	for range 3 {
		if _, got := call(t, &tr, "GET", be.URL, ""); got != "ok" {
			t.Fatalf("%q", got)
		}
	}
	if be.accepted.Load() != 1 || tr.idleCount() != 1 {
		t.Errorf("accepted %d idle %d, want 1 1", be.accepted.Load(), tr.idleCount())
	}
	tr.CloseIdleConnections()
}

// A body kept after its end never reads from its connection again, which
// may be serving another call by then.
func TestOldBodyLeavesReusedConnAlone(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	tr, _ := newTransport()
	get := func(path string) *http.Response {
		req, _ := http.NewRequest("GET", be.URL+path, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	first := get("/first")
	if b, _ := io.ReadAll(first.Body); string(b) != "/first" {
		t.Fatalf("%q", b)
	}
	second := get("/second") // the same connection
	if n, err := first.Body.Read(make([]byte, 16)); n != 0 || err != io.EOF {
		t.Errorf("old body Read = %d, %v; want 0, EOF", n, err)
	}
	first.Body.Close()
	if b, err := io.ReadAll(second.Body); string(b) != "/second" || err != nil {
		t.Errorf("second: %q %v", b, err)
	}
	second.Body.Close()
	if be.accepted.Load() != 1 {
		t.Errorf("accepted %d, want 1", be.accepted.Load())
	}
}
