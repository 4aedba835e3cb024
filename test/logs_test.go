package test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Issue 8: logs and telemetry never carry API keys, prompts or completions
// (no key policy here enables content logging).

// leakCheck collects the output of every process and payload a test wants
// checked and the strings that must not appear in any of them.
type leakCheck struct {
	sources map[string]func() string
	needles map[string]string // what → value
}

func newLeakCheck() *leakCheck {
	return &leakCheck{sources: map[string]func() string{}, needles: map[string]string{}}
}

// watchStack adds the gateway's and the simulator's output.
func (lc *leakCheck) watchStack(name string, s *stack) {
	lc.sources[name+" gateway"] = s.GW.Output
	lc.sources[name+" simulator"] = s.Sim.Output
}

// forbid adds a string that must appear nowhere; short values are skipped
// (they would match by accident).
func (lc *leakCheck) forbid(t testing.TB, what, v string) {
	t.Helper()
	if len(v) < 12 {
		t.Fatalf("%s %q is too short to grep for", what, v)
	}
	lc.needles[what] = v
}

// forbidKey forbids a whole key and its secret part (after the first '.').
func (lc *leakCheck) forbidKey(t testing.TB, what, key string) {
	t.Helper()
	lc.forbid(t, what, key)
	if _, sec, ok := strings.Cut(key, "."); ok {
		lc.forbid(t, what+" secret part", sec)
	}
}

func (lc *leakCheck) assert(t testing.TB) {
	t.Helper()
	for src, out := range lc.sources {
		text := out()
		if text == "" {
			continue
		}
		for what, v := range lc.needles {
			if i := strings.Index(text, v); i >= 0 {
				t.Errorf("%s output contains the %s: …%s…", src, what, text[max(0, i-200):min(len(text), i+len(v)+50)])
			}
		}
	}
}

// completionTexts returns the generated text in an OpenAI JSON answer
// (chat, Responses or a job result): every "content" or "text" string.
func completionTexts(b []byte) []string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	var out []string
	var walk func(any, string)
	walk = func(v any, key string) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(c, k)
			}
		case []any:
			for _, c := range x {
				walk(c, key)
			}
		case string:
			if key == "content" || key == "text" {
				out = append(out, x)
			}
		}
	}
	walk(v, "")
	return out
}

// longestText is the longest of ss.
func longestText(ss []string) string {
	l := ""
	for _, s := range ss {
		if len(s) > len(l) {
			l = s
		}
	}
	return l
}

// streamText concatenates the delta contents of a chat SSE stream.
func streamText(t *testing.T, body io.Reader) string {
	t.Helper()
	var sb strings.Builder
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var ev struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal([]byte(data), &ev) == nil {
			for _, c := range ev.Choices {
				sb.WriteString(c.Delta.Content)
			}
		}
	}
	return sb.String()
}

// TestLogsCarryNoSecretsOrContent runs plain, streamed, embeddings,
// Responses, bad-key, unknown-model and async calls whose prompts carry a
// marker, then greps all output of the gateway and the simulator (and the
// telemetry sent) for the API keys, their secret parts, the marker and the
// completions the client received: none may appear.
func TestLogsCarryNoSecretsOrContent(t *testing.T) {
	const marker = "zebra-marker-7f3c9a1e-prompt"
	in := newAIIngest(t, false)
	s := startStack(t, stackOptions{env: []string{in.env()}, extraTop: "timers: { drain: 200ms }"})
	lc := newLeakCheck()
	lc.watchStack("stack", s)
	lc.sources["telemetry payloads"] = in.payloads
	lc.forbidKey(t, "API key", s.Key)
	lc.forbid(t, "prompt marker", marker)
	keyID, _, _ := strings.Cut(s.Key, ".")
	badSecret := keyID + ".not-the-secret-but-still-secret-0123456789"
	lc.forbidKey(t, "wrong key", badSecret)
	lc.forbid(t, "malformed key", "sk-plain-looking-secret-abcdef0123456789")

	ctx := context.Background()
	do := func(path, key, body string, hdr map[string]string) (int, []byte) {
		t.Helper()
		resp := post(t, ctx, s.URL+path, key, body, hdr)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	chat := `{"model":"gpt-4o-mini","max_tokens":40,"messages":[{"role":"user","content":"` + marker + ` tell me something"}]}`
	var completions []string

	tests := []struct {
		name     string
		path     string
		key      string
		body     string
		hdr      map[string]string
		want     int
		generate bool // the answer carries generated text to forbid
	}{
		{"plain chat", "/openai/v1/chat/completions", s.Key, chat, nil, 200, true},
		{"chat with the key in api-key", "/openai/v1/chat/completions", "", chat, map[string]string{"api-key": s.Key}, 200, true},
		{"embeddings", "/openai/v1/embeddings", s.Key, `{"model":"text-embedding-3-small","input":"` + marker + `"}`, nil, 200, false},
		{"responses", "/openai/v1/responses", s.Key, `{"model":"gpt-4o-mini","max_output_tokens":40,"input":"` + marker + ` respond"}`, nil, 200, true},
		{"wrong secret", "/openai/v1/chat/completions", badSecret, chat, nil, 401, false},
		{"malformed key", "/openai/v1/chat/completions", "sk-plain-looking-secret-abcdef0123456789", chat, nil, 401, false},
		{"unknown model", "/openai/v1/chat/completions", s.Key, `{"model":"no-such-model","messages":[{"role":"user","content":"` + marker + `"}]}`, nil, 404, false},
		{"bad JSON", "/openai/v1/chat/completions", s.Key, `{"model":"gpt-4o-mini","messages":"` + marker, nil, 400, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, b := do(tt.path, tt.key, tt.body, tt.hdr)
			if st != tt.want {
				t.Fatalf("got %d %s, want %d", st, b, tt.want)
			}
			if tt.generate {
				c := longestText(completionTexts(b))
				if len(c) < 12 {
					t.Fatalf("no completion text in %s", b)
				}
				completions = append(completions, c)
			}
		})
	}

	// Streamed.
	resp := post(t, ctx, s.URL+"/openai/v1/chat/completions", s.Key,
		`{"model":"gpt-4o-mini","stream":true,"max_tokens":40,"messages":[{"role":"user","content":"`+marker+` stream"}]}`, nil)
	text := streamText(t, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(text) < 12 {
		t.Fatalf("stream: got %d with text %q", resp.StatusCode, text)
	}
	completions = append(completions, text)

	// Async: the job's result is stored and shown, but never logged.
	st, b := do("/openai/v1/chat/completions", s.Key, chat, map[string]string{"Prefer": "respond-async"})
	var job struct {
		ID string `json:"id"`
	}
	if st != http.StatusAccepted || json.Unmarshal(b, &job) != nil {
		t.Fatalf("submit: got %d %s", st, b)
	}
	if c := longestText(completionTexts(waitJobSucceeded(t, s, s.Key, job.ID))); len(c) >= 12 {
		completions = append(completions, c)
	} else {
		t.Errorf("job result has no completion text")
	}

	for i, c := range completions {
		// A distinctive slice, not the whole text: a log that kept a
		// truncated completion must still be caught.
		lc.forbid(t, "completion "+string(rune('A'+i)), c[:min(len(c), 24)])
		lc.forbid(t, "completion "+string(rune('A'+i))+" tail", c[max(0, len(c)-24):])
	}

	// Let the last request lines be written, then stop the gateway so the
	// shutdown path (flush, final log lines) is covered too.
	time.Sleep(100 * time.Millisecond)
	stopGateway(t, s)
	// One request line per call that reached a backend (plain ×2,
	// embeddings, responses, stream, job), one refused line per refusal
	// (wrong secret, malformed key, unknown model, bad JSON).
	if len(s.GW.LogLines("request")) < 6 {
		t.Errorf("got %d request log lines; the check needs the gateway to log: %s", len(s.GW.LogLines("request")), tail(s.GW.Output(), 2000))
	}
	refused := map[string]float64{} // code -> status
	for _, l := range s.GW.LogLines("refused") {
		code, _ := l["code"].(string)
		refused[code], _ = l["status"].(float64)
		if l["route"] != "/openai/v1/chat/completions" {
			t.Errorf("refused line with route %v: %v", l["route"], l)
		}
		if code == "model_not_found" && l["key_id"] == "" {
			t.Errorf("a refusal after authentication does not name the caller: %v", l)
		}
	}
	for code, status := range map[string]float64{"invalid_api_key": 401, "model_not_found": 404, "invalid_request_error": 400} {
		if refused[code] != status {
			t.Errorf("no refused line with %s %v (got %v)", code, status, refused)
		}
	}
	if len(in.received("RequestData")) == 0 {
		t.Error("no telemetry arrived; the telemetry part of the check is empty")
	}
	lc.assert(t)
}

// TestLogsRequestLine: the one "request" log line per call is JSON with the
// request id and the trace id (the incoming traceparent's).
func TestLogsRequestLine(t *testing.T) {
	s := startStack(t, stackOptions{})
	resp := post(t, context.Background(), s.URL+"/openai/v1/chat/completions", s.Key,
		`{"model":"gpt-4o-mini","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`,
		map[string]string{"traceparent": "00-" + testTraceID + "-" + testSpanID + "-01"})
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	stopGateway(t, s)
	lines := s.GW.LogLines("request")
	if len(lines) != 1 {
		t.Fatalf("got %d request lines, want 1:\n%s", len(lines), s.GW.Output())
	}
	l := lines[0]
	checkAll(t, []telCheck{
		{"trace_id", l["trace_id"], testTraceID},
		{"request_id present", l["request_id"] != nil && l["request_id"] != "", true},
		{"level", l["level"], "INFO"},
		{"team", l["team"], "research"},
		{"status", l["status"], float64(200)},
	})
}
