package test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

// clients returns the two ways apps reach the gateway: the OpenAI v1 base
// URL, and Azure deployment paths with an api-version.
func clients(s *stack) map[string]openai.Client {
	return map[string]openai.Client{
		"v1":       openai.NewClient(option.WithBaseURL(s.URL+"/openai/v1/"), option.WithAPIKey(s.Key), option.WithMaxRetries(0)),
		"v1-short": openai.NewClient(option.WithBaseURL(s.URL+"/v1/"), option.WithAPIKey(s.Key), option.WithMaxRetries(0)),
		"azure": openai.NewClient(azure.WithEndpoint(s.URL, "2024-10-21"), azure.WithAPIKey(s.Key),
			azure.WithUnsafeAllowHTTP(), option.WithMaxRetries(0)),
	}
}

func chatParams(model, prompt string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
	}
}

func TestChat(t *testing.T) {
	s := startStack(t, stackOptions{})
	ctx := context.Background()
	for name, c := range clients(s) {
		t.Run(name, func(t *testing.T) {
			resp, err := c.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "Say hello to "+name))
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Choices) != 1 || resp.Choices[0].Message.Content == "" {
				t.Fatalf("choices %+v", resp.Choices)
			}
			if resp.Usage.PromptTokens == 0 || resp.Usage.CompletionTokens == 0 ||
				resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
				t.Errorf("usage %+v", resp.Usage)
			}
		})
	}
}

func TestChatStreaming(t *testing.T) {
	s := startStack(t, stackOptions{})
	ctx := context.Background()
	for name, c := range clients(s) {
		for _, withUsage := range []bool{false, true} {
			t.Run(name+map[bool]string{false: "", true: "+usage"}[withUsage], func(t *testing.T) {
				p := chatParams("gpt-4o-mini", "Stream something for "+name)
				if withUsage {
					p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
				}
				st := c.Chat.Completions.NewStreaming(ctx, p)
				var acc openai.ChatCompletionAccumulator
				chunks, usageChunks := 0, 0
				for st.Next() {
					ch := st.Current()
					acc.AddChunk(ch)
					chunks++
					if ch.Usage.TotalTokens > 0 {
						usageChunks++
					}
				}
				if err := st.Err(); err != nil {
					t.Fatal(err)
				}
				if chunks < 3 || acc.Choices[0].Message.Content == "" {
					t.Fatalf("chunks=%d content=%q", chunks, acc.Choices[0].Message.Content)
				}
				// The gateway asks the backend for usage either way, and
				// strips the usage chunk when the client did not ask for it.
				want := 0
				if withUsage {
					want = 1
				}
				if usageChunks != want {
					t.Errorf("usage chunks %d, want %d", usageChunks, want)
				}
			})
		}
	}
}

func TestEmbeddings(t *testing.T) {
	s := startStack(t, stackOptions{})
	ctx := context.Background()
	for name, c := range clients(s) {
		t.Run(name, func(t *testing.T) {
			resp, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
				Model: "text-embedding-3-small",
				Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"one", "two words"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Data) != 2 || len(resp.Data[0].Embedding) == 0 {
				t.Fatalf("data %d", len(resp.Data))
			}
			if resp.Usage.PromptTokens == 0 {
				t.Errorf("usage %+v", resp.Usage)
			}
		})
	}
}

func TestResponses(t *testing.T) {
	s := startStack(t, stackOptions{})
	ctx := context.Background()
	c := clients(s)["v1"]
	resp, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Model: "gpt-4o-mini",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Tell me about gateways")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.OutputText() == "" || resp.Usage.InputTokens == 0 || resp.Usage.OutputTokens == 0 {
		t.Fatalf("output %q usage %+v", resp.OutputText(), resp.Usage)
	}
	// Continue the conversation: the backend must know the previous id.
	next, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Model:              "gpt-4o-mini",
		PreviousResponseID: openai.String(resp.ID),
		Input:              responses.ResponseNewParamsInputUnion{OfString: openai.String("And more?")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if next.ID == resp.ID {
		t.Error("same response id twice")
	}

	st := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{
		Model: "gpt-4o-mini",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Stream a response")},
	})
	deltas, completed := 0, false
	var text strings.Builder
	for st.Next() {
		ev := st.Current()
		switch ev.Type {
		case "response.output_text.delta":
			deltas++
			text.WriteString(ev.Delta)
		case "response.completed":
			completed = true
			if ev.Response.Usage.OutputTokens == 0 {
				t.Errorf("completed event without usage")
			}
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if !completed || deltas < 2 || text.Len() == 0 {
		t.Errorf("completed=%v deltas=%d text=%q", completed, deltas, text.String())
	}
}

// TestStreamingIsNotBuffered: the simulator pauses 2 s after its second
// event; the client must see the first content long before the pause ends.
func TestStreamingIsNotBuffered(t *testing.T) {
	s := startStack(t, stackOptions{})
	for name, c := range clients(s) {
		t.Run(name, func(t *testing.T) {
			const pause = 2 * time.Second
			begin := time.Now()
			st := c.Chat.Completions.NewStreaming(context.Background(), chatParams("gpt-4o-mini", "pause test "+name),
				option.WithHeader("x-sim-pause-after-chunk", "2"), option.WithHeader("x-sim-pause-ms", "2000"),
				option.WithHeader("x-sim-latency-ttft-ms", "0"))
			var first time.Duration
			n := 0
			for st.Next() {
				n++
				if n == 2 {
					first = time.Since(begin)
				}
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			total := time.Since(begin)
			if total < pause {
				t.Fatalf("stream took %v, less than the simulator's pause %v: the pause did not happen", total, pause)
			}
			if first > pause/2 {
				t.Errorf("second event arrived after %v; want well before the %v pause ends (buffered?)", first, pause)
			}
			t.Logf("event 2 after %v, stream done after %v", first, total)
		})
	}
}

// apiError is the OpenAI error shape.
type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    string  `json:"code"`
		Param   *string `json:"param"`
	} `json:"error"`
}

func TestErrors(t *testing.T) {
	s := startStack(t, stackOptions{
		extraBackends: `  - { name: dead, url: "http://127.0.0.1:1", auth: { none: true } }`,
		extraModels: `  dead-model:
    targets:
      - { backend: dead, deployment: x }`,
	})
	ctx := context.Background()
	chat := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	v1 := s.URL + "/openai/v1/chat/completions"
	dep := s.URL + "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
	tests := []struct {
		name   string
		url    string
		key    string
		body   string
		hdr    map[string]string
		status int
		code   string
	}{
		{"missing key", v1, "", chat, nil, 401, "invalid_api_key"},
		{"bad key", v1, "fgw-000000000000.notarealsecretnotarealsecret", chat, nil, 401, "invalid_api_key"},
		{"garbage key", v1, "sk-whatever", chat, nil, 401, "invalid_api_key"},
		{"api-key header bad", dep, "", chat, map[string]string{"api-key": "nope"}, 401, "invalid_api_key"},
		{"unknown model v1", v1, s.Key, `{"model":"gpt-9","messages":[]}`, nil, 404, "model_not_found"},
		{"unknown deployment", s.URL + "/openai/deployments/gpt-9/chat/completions?api-version=2024-10-21", s.Key, chat, nil, 404, "DeploymentNotFound"},
		{"malformed json", v1, s.Key, `{"model":`, nil, 400, "invalid_request_error"},
		{"missing messages", v1, s.Key, `{"model":"gpt-4o-mini"}`, nil, 400, "invalid_request_error"},
		{"missing model", v1, s.Key, `{"messages":[]}`, nil, 400, "invalid_request_error"},
		{"missing api-version", s.URL + "/openai/deployments/gpt-4o-mini/chat/completions", s.Key, chat, nil, 400, "missing_api_version"},
		{"too large", v1, s.Key, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("x", 70000) + `"}]}`, nil, 413, "request_too_large"},
		{"unknown path", s.URL + "/openai/v1/nothing", s.Key, chat, nil, 404, "404"},
		{"backend unreachable", v1, s.Key, `{"model":"dead-model","messages":[]}`, nil, 502, "backend_unreachable"},
		{"backend timeout", v1, s.Key, chat, map[string]string{"x-sim-fault": "timeout"}, 504, "backend_timeout"},
		{"embeddings stream", s.URL + "/openai/v1/embeddings", s.Key, `{"model":"text-embedding-3-small","input":"x","stream":true}`, nil, 400, "invalid_request_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := post(t, ctx, tt.url, tt.key, tt.body, tt.hdr)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			var e apiError
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("not the OpenAI error shape: %v: %s", err, b)
			}
			if e.Error.Code != tt.code || e.Error.Message == "" || e.Error.Type == "" {
				t.Errorf("error %+v, want code %q with message and type", e.Error, tt.code)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("no x-request-id")
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content-type %q", ct)
			}
		})
	}
	// The SDK surfaces the same errors as *openai.Error.
	c := openai.NewClient(option.WithBaseURL(s.URL+"/openai/v1/"), option.WithAPIKey("wrong"), option.WithMaxRetries(0))
	_, err := c.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "hi"))
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusUnauthorized || oe.Code != "invalid_api_key" {
		t.Errorf("SDK error %v", err)
	}
}

// TestStreamUnchangedByUsageInjection: the gateway adds include_usage to
// learn a stream's usage; a client that did not ask must see no trace of it
// (no usage chunk, no "usage":null on the chunks), while the gateway still
// counts the tokens.
func TestStreamUnchangedByUsageInjection(t *testing.T) {
	s := startStack(t, stackOptions{})
	resp := post(t, context.Background(), s.URL+"/openai/v1/chat/completions", s.Key,
		`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"raw stream"}]}`, nil)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	if strings.Contains(string(b), `"usage"`) {
		t.Errorf("client stream carries usage it did not ask for:\n%s", tail(string(b), 600))
	}
	if !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
		t.Errorf("stream does not end with [DONE]: %q", tail(string(b), 100))
	}
	var lines []map[string]any
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && len(lines) == 0; time.Sleep(50 * time.Millisecond) {
		lines = s.GW.LogLines("request")
	}
	if len(lines) != 1 || lines[0]["usage_reported"] != true || lines[0]["completion_tokens"].(float64) == 0 {
		t.Errorf("gateway did not count the stream's usage: %v", lines)
	}
}
