package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testConfig has no latency, so tests run as fast as the machine allows.
func testConfig() Config {
	return Config{
		Window: Duration(10 * time.Second),
		Deployments: []Deployment{
			{Name: "chat", Model: "gpt-4o-mini"},
			{Name: "ptu", Model: "gpt-4o-mini", Provisioned: true, PTUCapacityTPM: 5000},
			{Name: "reason", Model: "o4-mini"},
			{Name: "embed", Model: "text-embedding-3-small"},
			{Name: "limited", Model: "gpt-4o-mini", RPM: 3, TPM: 4000},
		},
	}
}

// newTestServer starts the simulator behind a real HTTP server, as the
// gateway sees it.
func newTestServer(t *testing.T, cfg Config) (*Server, *httptest.Server, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	s, err := NewWithClock(cfg, nil, clock)
	if err != nil {
		t.Fatalf("NewWithClock: %v", err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv, clock
}

// post sends body to srv.URL+path with header pairs ("name", "value", …).
func post(t *testing.T, srv *httptest.Server, path, body string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// readAll returns the whole body, failing the test on a read error.
func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return b
}

// decodeJSON reads a whole JSON body into a generic map.
func decodeJSON(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readAll(t, resp), &m); err != nil {
		t.Fatalf("decoding body: %v", err)
	}
	return m
}

type sseEvent struct {
	name string
	data string
}

// readSSE parses a whole event stream; err is the read error that ended
// it early, if any.
func readSSE(r io.Reader) (events []sseEvent, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	var cur sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.data != "" {
				events = append(events, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		}
	}
	return events, sc.Err()
}

// jsonOf decodes one event's data.
func jsonOf(t *testing.T, e sseEvent) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader([]byte(e.data)))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("event %q: %v", e.data, err)
	}
	return m
}

// num reads a json.Number or float64 at a dotted path of a decoded object.
func num(t *testing.T, m map[string]any, path string) int64 {
	t.Helper()
	v := at(t, m, path)
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		if err != nil {
			t.Fatalf("%s = %v: %v", path, n, err)
		}
		return i
	case float64:
		return int64(n)
	}
	t.Fatalf("%s = %#v, want a number", path, v)
	return 0
}

// at walks a dotted path ("usage.prompt_tokens_details.cached_tokens",
// "choices.0.message") of a decoded JSON value.
func at(t *testing.T, m map[string]any, path string) any {
	t.Helper()
	var cur any = m
	for _, key := range strings.Split(path, ".") {
		switch v := cur.(type) {
		case map[string]any:
			var ok bool
			if cur, ok = v[key]; !ok {
				t.Fatalf("%s: no key %q", path, key)
			}
		case []any:
			i := 0
			for _, ch := range key {
				i = i*10 + int(ch-'0')
			}
			if i >= len(v) {
				t.Fatalf("%s: index %d out of %d", path, i, len(v))
			}
			cur = v[i]
		default:
			t.Fatalf("%s: cannot index %T with %q", path, cur, key)
		}
	}
	return cur
}

func str(t *testing.T, m map[string]any, path string) string {
	t.Helper()
	s, ok := at(t, m, path).(string)
	if !ok {
		t.Fatalf("%s = %#v, want a string", path, at(t, m, path))
	}
	return s
}

const chatBody = `{"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the gateway tests."}]}`
