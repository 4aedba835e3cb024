package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

const classicChat = "/openai/deployments/chat/chat/completions?api-version=2024-10-21"

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestChatCompletionBody(t *testing.T) {
	_, srv, _ := newTestServer(t, testConfig())
	tests := []struct {
		name, path, body string
	}{
		{"classic", classicChat, chatBody},
		{"v1", "/openai/v1/chat/completions", `{"model":"chat",` + chatBody[1:]},
		{"v1 with api-version", "/openai/v1/chat/completions?api-version=preview", `{"model":"chat",` + chatBody[1:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := post(t, srv, tt.path, tt.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status: got %d, want 200: %s", resp.StatusCode, readAll(t, resp))
			}
			for _, h := range []string{"apim-request-id", "x-request-id"} {
				if got := resp.Header.Get(h); !uuidRE.MatchString(got) {
					t.Errorf("%s: got %q, want a uuid", h, got)
				}
			}
			if got, want := resp.Header.Get("x-ms-region"), DefaultRegion; got != want {
				t.Errorf("x-ms-region: got %q, want %q", got, want)
			}
			if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
				t.Errorf("Content-Type: got %q, want %q", got, want)
			}
			m := decodeJSON(t, resp)
			if id := str(t, m, "id"); !strings.HasPrefix(id, "chatcmpl-") {
				t.Errorf("id: got %q, want chatcmpl-…", id)
			}
			for path, want := range map[string]string{
				"object":                  "chat.completion",
				"model":                   "gpt-4o-mini",
				"choices.0.message.role":  "assistant",
				"choices.0.finish_reason": "stop",
				"choices.0.content_filter_results.hate.severity":                    "safe",
				"prompt_filter_results.0.content_filter_results.jailbreak.filtered": "",
			} {
				if want == "" {
					at(t, m, path) // exists
					continue
				}
				if got := str(t, m, path); got != want {
					t.Errorf("%s: got %q, want %q", path, got, want)
				}
			}
			if fp := str(t, m, "system_fingerprint"); !strings.HasPrefix(fp, "fp_") {
				t.Errorf("system_fingerprint: got %q, want fp_…", fp)
			}
			// "You are terse." = 14 bytes → 4 tokens, "Say hello to the gateway tests." = 31 bytes → 8;
			// +3 per message, +3 for the reply.
			if got, want := num(t, m, "usage.prompt_tokens"), int64(4+3+8+3+3); got != want {
				t.Errorf("prompt_tokens: got %d, want %d", got, want)
			}
			completion := num(t, m, "usage.completion_tokens")
			if completion < minCompletion || completion > maxCompletion {
				t.Errorf("completion_tokens: got %d, want within %d..%d", completion, minCompletion, maxCompletion)
			}
			if got, want := int64(len(strings.Fields(str(t, m, "choices.0.message.content")))), completion; got != want {
				t.Errorf("words in content: got %d, want completion_tokens %d", got, want)
			}
			if got, want := num(t, m, "usage.total_tokens"), num(t, m, "usage.prompt_tokens")+completion; got != want {
				t.Errorf("total_tokens: got %d, want %d", got, want)
			}
			for _, p := range []string{"usage.prompt_tokens_details.cached_tokens", "usage.completion_tokens_details.reasoning_tokens"} {
				if got := num(t, m, p); got != 0 {
					t.Errorf("%s: got %d, want 0", p, got)
				}
			}
		})
	}
}

// chatOnce posts body and returns the decoded non-streamed answer.
func chatOnce(t *testing.T, srv *httptest.Server, path, body string) map[string]any {
	t.Helper()
	resp := post(t, srv, path, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200", resp.StatusCode)
	}
	return decodeJSON(t, resp)
}

func TestChatDeterminism(t *testing.T) {
	s, srv, _ := newTestServer(t, testConfig())
	first := chatOnce(t, srv, classicChat, chatBody)
	second := chatOnce(t, srv, classicChat, chatBody)
	v1 := chatOnce(t, srv, "/openai/v1/chat/completions", `{"model":"chat",`+chatBody[1:])
	// Another instance (another gateway backend) must answer the same.
	_, other, _ := newTestServer(t, testConfig())
	elsewhere := chatOnce(t, other, classicChat, chatBody)
	want := str(t, first, "choices.0.message.content")
	for name, m := range map[string]map[string]any{"second": second, "v1": v1, "other instance": elsewhere} {
		if got := str(t, m, "choices.0.message.content"); got != want {
			t.Errorf("%s content: got %q, want %q", name, got, want)
		}
		if got, want := num(t, m, "usage.completion_tokens"), num(t, first, "usage.completion_tokens"); got != want {
			t.Errorf("%s completion_tokens: got %d, want %d", name, got, want)
		}
		if str(t, m, "id") == str(t, first, "id") {
			t.Errorf("%s id: got the same id %q twice, want unique ids", name, str(t, m, "id"))
		}
	}
	different := chatOnce(t, srv, classicChat, `{"messages":[{"role":"user","content":"Something else entirely."}]}`)
	if str(t, different, "choices.0.message.content") == want {
		t.Errorf("a different prompt gave the same text %q", want)
	}
	if got, want := s.Usage()["chat"].Requests, int64(4); got != want {
		t.Errorf("Usage requests: got %d, want %d", got, want)
	}
}

// streamChunks posts a streaming request and returns its events.
func streamEvents(t *testing.T, resp *http.Response) []sseEvent {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200: %s", resp.StatusCode, readAll(t, resp))
	}
	if got, want := resp.Header.Get("Content-Type"), "text/event-stream; charset=utf-8"; got != want {
		t.Errorf("Content-Type: got %q, want %q", got, want)
	}
	events, err := readSSE(resp.Body)
	if err != nil {
		t.Fatalf("reading stream: %v", err)
	}
	return events
}

func TestChatStream(t *testing.T) {
	_, srv, _ := newTestServer(t, testConfig())
	whole := decodeJSON(t, post(t, srv, classicChat, chatBody))
	wantText := str(t, whole, "choices.0.message.content")
	wantCompletion := num(t, whole, "usage.completion_tokens")

	tests := []struct {
		name         string
		extra        string
		includeUsage bool
	}{
		{"without usage", `"stream":true`, false},
		{"include_usage false", `"stream":true,"stream_options":{"include_usage":false}`, false},
		{"include_usage", `"stream":true,"stream_options":{"include_usage":true}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events := streamEvents(t, post(t, srv, classicChat, `{`+tt.extra+`,`+chatBody[1:]))
			if len(events) < 5 {
				t.Fatalf("events: got %d, want at least 5", len(events))
			}
			if got, want := events[len(events)-1].data, "[DONE]"; got != want {
				t.Fatalf("last event: got %q, want %q", got, want)
			}
			chunks := make([]map[string]any, len(events)-1)
			for i, e := range events[:len(events)-1] {
				if e.name != "" {
					t.Errorf("event %d has an event name %q; chat chunks have none", i, e.name)
				}
				chunks[i] = jsonOf(t, e)
			}
			// Azure quirk: the first event only carries prompt_filter_results, with empty id and model.
			first := chunks[0]
			if got := len(at(t, first, "choices").([]any)); got != 0 {
				t.Errorf("first chunk choices: got %d, want 0", got)
			}
			at(t, first, "prompt_filter_results.0.content_filter_results")
			if str(t, first, "id") != "" || str(t, first, "model") != "" {
				t.Errorf("first chunk id/model: got %q/%q, want empty", str(t, first, "id"), str(t, first, "model"))
			}
			if got, want := str(t, chunks[1], "choices.0.delta.role"), "assistant"; got != want {
				t.Errorf("second chunk role: got %q, want %q", got, want)
			}
			body := chunks[1:] // role, content…, finish
			if tt.includeUsage {
				last := chunks[len(chunks)-1]
				if got := len(at(t, last, "choices").([]any)); got != 0 {
					t.Errorf("usage chunk choices: got %d, want 0", got)
				}
				if got := num(t, last, "usage.completion_tokens"); got != wantCompletion {
					t.Errorf("usage chunk completion_tokens: got %d, want %d", got, wantCompletion)
				}
				if got, want := num(t, last, "usage.prompt_tokens"), num(t, whole, "usage.prompt_tokens"); got != want {
					t.Errorf("usage chunk prompt_tokens: got %d, want %d", got, want)
				}
				for i, c := range chunks[:len(chunks)-1] {
					if u, ok := c["usage"]; !ok || u != nil {
						t.Errorf("chunk %d usage: got %v (present %v), want null", i, u, ok)
					}
				}
				body = chunks[1 : len(chunks)-1]
			} else {
				for i, c := range chunks {
					if _, ok := c["usage"]; ok {
						t.Errorf("chunk %d carries usage without include_usage", i)
					}
				}
			}
			finish := body[len(body)-1]
			if got, want := str(t, finish, "choices.0.finish_reason"), "stop"; got != want {
				t.Errorf("finish chunk finish_reason: got %q, want %q", got, want)
			}
			var text strings.Builder
			content := body[1 : len(body)-1]
			for _, c := range content {
				if !strings.HasPrefix(str(t, c, "id"), "chatcmpl-") || str(t, c, "object") != "chat.completion.chunk" {
					t.Errorf("content chunk id/object: got %q/%q", str(t, c, "id"), str(t, c, "object"))
				}
				if at(t, c, "choices.0.finish_reason") != nil {
					t.Errorf("content chunk has a finish_reason")
				}
				text.WriteString(str(t, c, "choices.0.delta.content"))
			}
			if got := text.String(); got != wantText {
				t.Errorf("streamed text: got %q, want the non-streamed %q", got, wantText)
			}
			if got, want := int64(len(content)), (wantCompletion+tokensPerChunk-1)/tokensPerChunk; got != want {
				t.Errorf("content chunks: got %d, want %d (%d tokens, %d per chunk)", got, want, wantCompletion, tokensPerChunk)
			}
		})
	}
}

func TestChatOutputCaps(t *testing.T) {
	_, srv, _ := newTestServer(t, testConfig())
	user := `"messages":[{"role":"user","content":"Tell me a long story about limits."}]`
	tests := []struct {
		name           string
		deployment     string
		params         string
		wantStatus     int
		wantCode       string
		wantChoices    int
		wantCompletion int64 // 0 = not checked
		wantFinish     string
	}{
		{"max_tokens caps", "chat", `"max_tokens":5`, 200, "", 1, 5, "length"},
		{"max_completion_tokens caps", "chat", `"max_completion_tokens":7`, 200, "", 1, 7, "length"},
		{"max_completion_tokens wins", "chat", `"max_tokens":9,"max_completion_tokens":8`, 200, "", 1, 8, "length"},
		{"large cap does not bind", "chat", `"max_tokens":1000`, 200, "", 1, 0, "stop"},
		{"n multiplies choices", "chat", `"n":3`, 200, "", 3, 0, "stop"},
		{"n with cap", "chat", `"n":2,"max_tokens":4`, 200, "", 2, 8, "length"},
		{"reasoning rejects max_tokens", "reason", `"max_tokens":50`, 400, "unsupported_parameter", 0, 0, ""},
		{"reasoning spends the cap on reasoning first", "reason", `"max_completion_tokens":50`, 200, "", 1, 50, "length"},
		{"zero cap", "chat", `"max_tokens":0`, 400, "invalid_value", 0, 0, ""},
		{"n too large", "chat", `"n":129`, 400, "invalid_value", 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := post(t, srv, "/openai/deployments/"+tt.deployment+"/chat/completions?api-version=2024-10-21", `{`+user+`,`+tt.params+`}`)
			m := decodeJSON(t, resp)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d: %v", resp.StatusCode, tt.wantStatus, m)
			}
			if tt.wantStatus != 200 {
				if got := str(t, m, "error.code"); got != tt.wantCode {
					t.Errorf("error.code: got %q, want %q", got, tt.wantCode)
				}
				return
			}
			choices := at(t, m, "choices").([]any)
			if len(choices) != tt.wantChoices {
				t.Fatalf("choices: got %d, want %d", len(choices), tt.wantChoices)
			}
			var words int64
			for i := range choices {
				if got := str(t, m, fmt.Sprintf("choices.%d.finish_reason", i)); got != tt.wantFinish {
					t.Errorf("choice %d finish_reason: got %q, want %q", i, got, tt.wantFinish)
				}
				words += int64(len(strings.Fields(str(t, m, fmt.Sprintf("choices.%d.message.content", i)))))
			}
			completion := num(t, m, "usage.completion_tokens")
			if tt.wantCompletion != 0 && completion != tt.wantCompletion {
				t.Errorf("completion_tokens: got %d, want %d", completion, tt.wantCompletion)
			}
			if got, want := words+num(t, m, "usage.completion_tokens_details.reasoning_tokens"), completion; got != want {
				t.Errorf("words + reasoning: got %d, want completion_tokens %d", got, want)
			}
		})
	}
}

func TestReasoningTokens(t *testing.T) {
	_, srv, _ := newTestServer(t, testConfig())
	m := decodeJSON(t, post(t, srv, "/openai/v1/chat/completions", `{"model":"reason","messages":[{"role":"user","content":"Think."}],"max_completion_tokens":2000}`))
	reasoning := num(t, m, "usage.completion_tokens_details.reasoning_tokens")
	if reasoning < reasoningBlock || reasoning > 4*reasoningBlock || reasoning%reasoningBlock != 0 {
		t.Errorf("reasoning_tokens: got %d, want a multiple of %d within %d..%d", reasoning, reasoningBlock, reasoningBlock, 4*reasoningBlock)
	}
	words := int64(len(strings.Fields(str(t, m, "choices.0.message.content"))))
	if got, want := num(t, m, "usage.completion_tokens"), words+reasoning; got != want {
		t.Errorf("completion_tokens: got %d, want visible %d + reasoning %d", got, words, reasoning)
	}
	if got, want := str(t, m, "model"), "o4-mini"; got != want {
		t.Errorf("model: got %q, want %q", got, want)
	}
}

func TestCachedTokens(t *testing.T) {
	_, srv, _ := newTestServer(t, testConfig())
	tests := []struct {
		name        string
		contentLen  int
		wantPrompt  int64
		wantCached  int64
		provisioned bool
	}{
		{"short prompt has no cache", 400, 100 + 3 + 3, 0, false},
		{"long prompt caches whole 128 blocks below the prompt", 5000, 1250 + 3 + 3, 1152, false},
		{"exactly 1024 tokens", 4072, 1018 + 3 + 3, 896, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"messages": []map[string]string{{"role": "user", "content": strings.Repeat("x", tt.contentLen)}}})
			m := decodeJSON(t, post(t, srv, classicChat, string(body)))
			if got := num(t, m, "usage.prompt_tokens"); got != tt.wantPrompt {
				t.Errorf("prompt_tokens: got %d, want %d", got, tt.wantPrompt)
			}
			if got := num(t, m, "usage.prompt_tokens_details.cached_tokens"); got != tt.wantCached {
				t.Errorf("cached_tokens: got %d, want %d", got, tt.wantCached)
			}
		})
	}
}

func TestLegacyCompletions(t *testing.T) {
	s, srv, _ := newTestServer(t, testConfig())
	const path = "/openai/deployments/chat/completions?api-version=2024-10-21"

	t.Run("non-stream", func(t *testing.T) {
		m := decodeJSON(t, post(t, srv, path, `{"prompt":"Once upon a time","max_tokens":300}`))
		if got, want := str(t, m, "object"), "text_completion"; got != want {
			t.Errorf("object: got %q, want %q", got, want)
		}
		if id := str(t, m, "id"); !strings.HasPrefix(id, "cmpl-") {
			t.Errorf("id: got %q, want cmpl-…", id)
		}
		// "Once upon a time" = 16 bytes = 4 tokens; legacy prompts have no message overhead.
		if got, want := num(t, m, "usage.prompt_tokens"), int64(4); got != want {
			t.Errorf("prompt_tokens: got %d, want %d", got, want)
		}
		if got, want := int64(len(strings.Fields(str(t, m, "choices.0.text")))), num(t, m, "usage.completion_tokens"); got != want {
			t.Errorf("words: got %d, want completion_tokens %d", got, want)
		}
	})
	t.Run("prompt array times n", func(t *testing.T) {
		m := decodeJSON(t, post(t, srv, "/openai/v1/completions", `{"model":"chat","prompt":["a","b"],"n":2}`))
		if got, want := len(at(t, m, "choices").([]any)), 4; got != want {
			t.Errorf("choices: got %d, want %d", got, want)
		}
	})
	t.Run("token prompts", func(t *testing.T) {
		m := decodeJSON(t, post(t, srv, path, `{"prompt":[[1,2,3],[4,5]]}`))
		if got, want := num(t, m, "usage.prompt_tokens"), int64(5); got != want {
			t.Errorf("prompt_tokens: got %d, want %d", got, want)
		}
	})
	t.Run("stream", func(t *testing.T) {
		whole := decodeJSON(t, post(t, srv, path, `{"prompt":"Stream me"}`))
		events := streamEvents(t, post(t, srv, path, `{"prompt":"Stream me","stream":true,"stream_options":{"include_usage":true}}`))
		if got, want := events[len(events)-1].data, "[DONE]"; got != want {
			t.Fatalf("last event: got %q, want %q", got, want)
		}
		first := jsonOf(t, events[0])
		at(t, first, "prompt_filter_results")
		usage := jsonOf(t, events[len(events)-2])
		if got, want := num(t, usage, "usage.completion_tokens"), num(t, whole, "usage.completion_tokens"); got != want {
			t.Errorf("usage chunk completion_tokens: got %d, want %d", got, want)
		}
		var text strings.Builder
		for _, e := range events[1 : len(events)-2] {
			c := jsonOf(t, e)
			if str(t, c, "object") != "text_completion" {
				t.Errorf("chunk object: got %q, want text_completion", str(t, c, "object"))
			}
			text.WriteString(str(t, c, "choices.0.text"))
		}
		if got, want := text.String(), str(t, whole, "choices.0.text"); got != want {
			t.Errorf("streamed text: got %q, want %q", got, want)
		}
	})
	t.Run("not on reasoning models", func(t *testing.T) {
		resp := post(t, srv, "/openai/deployments/reason/completions?api-version=2024-10-21", `{"prompt":"x"}`)
		m := decodeJSON(t, resp)
		if resp.StatusCode != 400 || str(t, m, "error.code") != "OperationNotSupported" {
			t.Errorf("got %d %v, want 400 OperationNotSupported", resp.StatusCode, m)
		}
	})
	if got, want := s.Usage()["chat"].Requests, int64(5); got != want {
		t.Errorf("Usage requests: got %d, want %d", got, want)
	}
}
