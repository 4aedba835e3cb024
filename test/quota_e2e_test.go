package test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/azurite"
)

// keyID is the public id of a gateway key ("fgw-<id>.<secret>").
func keyID(t testing.TB, secret string) string {
	t.Helper()
	id, _, ok := strings.Cut(strings.TrimPrefix(secret, "fgw-"), ".")
	if !ok || !strings.HasPrefix(secret, "fgw-") {
		t.Fatalf("key %q: want fgw-<id>.<secret>", secret)
	}
	return id
}

// quotaCall is one answer of the gateway, reduced to what quota tests read.
type quotaCall struct {
	status int
	hdr    http.Header
	code   string // error.code of an error body
	msg    string
}

// chatOnce sends a small non-streamed chat with max_tokens 20 (so the
// admission estimate is small and rpm binds before tpm).
func chatOnce(t testing.TB, url, key string) quotaCall {
	t.Helper()
	resp := post(t, context.Background(), url+"/openai/v1/chat/completions", key,
		`{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"quota"}]}`, nil)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	c := quotaCall{status: resp.StatusCode, hdr: resp.Header}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"error"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("status %v: body %q is not the OpenAI error shape: %v", resp.StatusCode, b, err)
		}
		c.code, c.msg = e.Error.Code, e.Error.Message
	}
	return c
}

// waitWindowStart sleeps until just after the start of the next fixed
// window (windows are aligned to the Unix epoch).
func waitWindowStart(w time.Duration) {
	now := time.Now()
	time.Sleep(now.Truncate(w).Add(w).Sub(now) + 20*time.Millisecond)
}

// TestQuotaE2E: through real processes, the gateway's own limits are what
// clients see (headers, 429 with retry-after, 403 for a used-up monthly
// budget), admission recovers in the next window, and a per-key override
// set with `handler limits set` while the gateway runs takes effect within
// limits.overrideTTL.
func TestQuotaE2E(t *testing.T) {
	t.Run("rate limit", func(t *testing.T) {
		const window = 2 * time.Second
		s := startStack(t, stackOptions{extraTop: `limits: { window: 2s, syncInterval: 100ms, teams: { research: { rpm: 20, tpm: 4000 } } }`})
		waitWindowStart(window)
		start := time.Now()
		var admitted int
		var refused quotaCall
		for i := 0; i < 40; i++ {
			c := chatOnce(t, s.URL, s.Key)
			if c.status == http.StatusOK {
				admitted++
				if i == 0 {
					// The gateway's limits, not the simulator's deployment limits.
					if got := c.hdr.Get("x-ratelimit-limit-requests"); got != "20" {
						t.Errorf("x-ratelimit-limit-requests: got %q, want 20", got)
					}
					if got := c.hdr.Get("x-ratelimit-limit-tokens"); got != "4000" {
						t.Errorf("x-ratelimit-limit-tokens: got %q, want 4000", got)
					}
					if got := c.hdr.Get("x-ratelimit-remaining-requests"); got != "19" {
						t.Errorf("x-ratelimit-remaining-requests after the first request: got %q, want 19", got)
					}
					if rem, err := strconv.Atoi(c.hdr.Get("x-ratelimit-remaining-tokens")); err != nil || rem <= 0 || rem >= 4000 {
						t.Errorf("x-ratelimit-remaining-tokens: got %q, want in (0, 4000)", c.hdr.Get("x-ratelimit-remaining-tokens"))
					}
				}
				continue
			}
			refused = c
			break
		}
		elapsed := time.Since(start)
		t.Logf("admitted %d requests in %v before the first refusal (rpm 20, window %v)", admitted, elapsed, window)
		if elapsed >= window {
			t.Skipf("the burst took %v, longer than the window; cannot judge the limit", elapsed)
		}
		if admitted != 20 {
			t.Errorf("admitted %v requests in one window, want 20 (rpm)", admitted)
		}
		if refused.status != http.StatusTooManyRequests || refused.code != "rate_limit_exceeded" || refused.msg == "" {
			t.Fatalf("refusal: got %v %q %q, want 429 rate_limit_exceeded with a message", refused.status, refused.code, refused.msg)
		}
		ra, err1 := strconv.Atoi(refused.hdr.Get("retry-after"))
		ram, err2 := strconv.Atoi(refused.hdr.Get("retry-after-ms"))
		if err1 != nil || err2 != nil || ram <= 0 || ram > int(window/time.Millisecond)+50 || ra < 1 || ra > 2 {
			t.Errorf("retry-after %q, retry-after-ms %q: want whole seconds in [1,2] and ms in (0, 2050]",
				refused.hdr.Get("retry-after"), refused.hdr.Get("retry-after-ms"))
		}
		if got := refused.hdr.Get("x-ratelimit-remaining-requests"); got != "0" {
			t.Errorf("x-ratelimit-remaining-requests on the 429: got %q, want 0", got)
		}
		// Recovery: after retry-after-ms the next window admits again.
		time.Sleep(time.Duration(ram)*time.Millisecond + 20*time.Millisecond)
		if c := chatOnce(t, s.URL, s.Key); c.status != http.StatusOK {
			t.Errorf("after retry-after-ms %d: got %v %q, want 200", ram, c.status, c.code)
		}
	})

	t.Run("monthly budget", func(t *testing.T) {
		s := startStack(t, stackOptions{
			extraTop:  `limits: { window: 2s, syncInterval: 100ms, teams: { sales: { monthlyTokens: 1500 } } }`,
			extraKeys: [][]string{{"--team", "sales", "--app", "budget"}},
		})
		key := s.ExtraKeys[0]
		var ok int
		var last quotaCall
		for i := 0; i < 200; i++ {
			last = chatOnce(t, s.URL, key)
			if last.status != http.StatusOK {
				break
			}
			ok++
		}
		var used int64
		for _, u := range simUsage(t, s.SimURL) {
			used += u.PromptTokens + u.CompletionTokens
		}
		t.Logf("budget 1500 tokens: %d requests admitted before the refusal, %d tokens used at the simulator", ok, used)
		if used > 1500 || used < 1500-60 {
			t.Errorf("tokens used: got %v, want within one request's estimate below the budget 1500", used)
		}
		if ok == 0 || ok >= 200 {
			t.Fatalf("admitted %v requests, want some and then a refusal", ok)
		}
		if last.status != http.StatusForbidden || last.code != "monthly_budget_exceeded" || last.msg == "" {
			t.Fatalf("refusal: got %v %q %q, want 403 monthly_budget_exceeded with a message", last.status, last.code, last.msg)
		}
		// Another team is not affected.
		if c := chatOnce(t, s.URL, s.Key); c.status != http.StatusOK {
			t.Errorf("team research: got %v %q, want 200", c.status, c.code)
		}
	})

	t.Run("key override with the CLI", func(t *testing.T) {
		az := azurite.Start(t)
		s, cfgPath := startTablesStack(t, az, `limits: { window: 2s, syncInterval: 100ms, overrideTTL: 1s }`)
		env := []string{"GatewayTables=" + az.ConnectionString()}
		for i := 0; i < 8; i++ {
			if c := chatOnce(t, s.URL, s.Key); c.status != http.StatusOK {
				t.Fatalf("before the override: got %v %q, want 200 (no limits configured)", c.status, c.code)
			}
		}
		out, err := cliCmd(cfgPath, env, "limits", "set", "--key", keyID(t, s.Key), "--rpm", "3").CombinedOutput()
		if err != nil {
			t.Fatalf("limits set: %v\n%s", err, out)
		}
		set := time.Now()
		// Within overrideTTL (1s) plus one window, a burst of 6 sees the
		// key's rpm 3.
		var took time.Duration
		for time.Since(set) < 5*time.Second {
			var refusedAt = -1
			var limit string
			for i := 0; i < 6; i++ {
				c := chatOnce(t, s.URL, s.Key)
				if c.status == http.StatusTooManyRequests {
					refusedAt, limit = i, c.hdr.Get("x-ratelimit-limit-requests")
					break
				}
			}
			if refusedAt >= 0 {
				took = time.Since(set)
				if limit != "3" {
					t.Errorf("x-ratelimit-limit-requests on the 429: got %q, want 3 (the override)", limit)
				}
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("override rpm 3 in effect %v after `limits set` (overrideTTL 1s)", took)
		if took == 0 || took > 3*time.Second {
			t.Fatalf("override took %v, want it within overrideTTL 1s (+ a window)", took)
		}
	})
}

// cliCmd is `handler <cmd> <sub> --config cfgPath <flags…>` with env added
// to this process's environment.
func cliCmd(cfgPath string, env []string, args ...string) *exec.Cmd {
	full := append([]string{args[0], args[1], "--config", cfgPath}, args[2:]...)
	c := exec.Command(handlerBin, full...)
	c.Env = append(os.Environ(), env...)
	return c
}

// startTablesStack is startStack on an Azurite store (azure-tables through
// the GatewayTables app setting), so CLI commands can run beside the
// gateway. It returns the stack and its config path.
func startTablesStack(t testing.TB, az *azurite.Instance, extraTop string) (*stack, string) {
	t.Helper()
	return startStoreStack(t, `store: { kind: azure-tables, connection: GatewayTables }`, "auth: { keyCacheTTL: 1s }",
		[]string{"GatewayTables=" + az.ConnectionString()}, extraTop, nil)
}

// startStoreStack mirrors startStack (harness_test.go) with a given store
// line and auth line; keys are made with the CLI for research/e2e and then for each of
// extraKeys.
func startStoreStack(t testing.TB, storeLine, authLine string, env []string, extraTop string, extraKeys [][]string) (*stack, string) {
	t.Helper()
	s := startStack(t, stackOptions{store: storeLine, auth: authLine, env: env, extraTop: extraTop, extraKeys: extraKeys})
	return s, s.CfgPath
}
