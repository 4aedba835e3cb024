package quota

import (
	"context"
	"net/http"
	"testing"

	"github.com/foundry-gateway/gateway/internal/config"
)

// A ticket with only a request limit, or only a token limit, sets only
// that pair of headers; every admitted request sets them in 2 allocations.
func TestTicketHeadersOneKind(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		limit config.Limit
		want  map[string]string
	}{
		{"requests", config.Limit{RPM: 10}, map[string]string{HeaderLimitRequests: "10", HeaderRemainingRequests: "9"}},
		{"tokens", config.Limit{TPM: 1000}, map[string]string{HeaderLimitTokens: "1000", HeaderRemainingTokens: "700"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			counters, limits := openTables(t)
			l := New(counters, limits, limitsConfig(func(c *config.LimitsConfig) { c.Defaults.Key = tt.limit }), newFakeClock(t0), nil)
			tk, err := l.Admit(ctx, []Subject{key1}, Estimate{Tokens: 300})
			if err != nil {
				t.Fatal(err)
			}
			h := http.Header{}
			tk.SetHeaders(h)
			if len(h) != len(tt.want) {
				t.Errorf("headers %v, want %v", h, tt.want)
			}
			for k, v := range tt.want {
				if got := h.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			h.Add(HeaderLimitRequests, "x") // the shared slice must not let one value overwrite another
			for k, v := range tt.want {
				if got := h.Get(k); got != v {
					t.Errorf("after an Add: %s = %q, want %q", k, got, v)
				}
			}
			if n := testing.AllocsPerRun(50, func() { tk.SetHeaders(http.Header{}) }); n > 3 { // the map, the string, the slice
				t.Errorf("SetHeaders: %v allocations, want at most 3", n)
			}
		})
	}
}
