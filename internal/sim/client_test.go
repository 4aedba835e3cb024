package sim

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

// The official client is the compatibility bar: it must work unchanged
// against the simulator both on /openai/v1 and on the Azure deployment
// paths that the azure package rewrites to.
func officialClients(srv *httptest.Server) map[string]openai.Client {
	return map[string]openai.Client{
		"v1": openai.NewClient(
			option.WithBaseURL(srv.URL+"/openai/v1/"),
			option.WithAPIKey("test-key"),
			option.WithHTTPClient(srv.Client()),
			option.WithMaxRetries(0),
		),
		"azure": openai.NewClient(
			azure.WithEndpoint(srv.URL, "2025-04-01-preview"),
			azure.WithAPIKey("test-key"),
			azure.WithUnsafeAllowHTTP(), // loopback httptest server
			option.WithMaxRetries(0),
		),
	}
}

func clientConfig() Config {
	cfg := testConfig()
	cfg.APIKey = "test-key"
	return cfg
}

func TestOfficialClientChat(t *testing.T) {
	s, srv, _ := newTestServer(t, clientConfig())
	for name, client := range officialClients(srv) {
		t.Run(name, func(t *testing.T) {
			params := openai.ChatCompletionNewParams{
				Model:    "chat",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("You are terse."), openai.UserMessage("Say hello to the gateway tests.")},
			}
			whole, err := client.Chat.Completions.New(t.Context(), params)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if whole.Choices[0].Message.Content == "" || whole.Usage.PromptTokens != 21 || whole.Model != "gpt-4o-mini" {
				t.Errorf("completion: got content %q, prompt_tokens %d, model %q", whole.Choices[0].Message.Content, whole.Usage.PromptTokens, whole.Model)
			}

			params.StreamOptions.IncludeUsage = openai.Bool(true)
			stream := client.Chat.Completions.NewStreaming(t.Context(), params)
			var acc openai.ChatCompletionAccumulator
			chunks := 0
			for stream.Next() {
				if !acc.AddChunk(stream.Current()) {
					t.Fatalf("accumulator rejected chunk %d: %s", chunks, stream.Current().RawJSON())
				}
				chunks++
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if got, want := acc.Choices[0].Message.Content, whole.Choices[0].Message.Content; got != want {
				t.Errorf("streamed content: got %q, want %q", got, want)
			}
			if got, want := acc.Usage.CompletionTokens, whole.Usage.CompletionTokens; got != want {
				t.Errorf("streamed completion_tokens: got %d, want %d", got, want)
			}
			if got, want := acc.Choices[0].FinishReason, "stop"; got != want {
				t.Errorf("finish_reason: got %q, want %q", got, want)
			}
		})
	}
	if got, want := s.Usage()["chat"].Requests, int64(4); got != want {
		t.Errorf("Usage requests: got %d, want %d", got, want)
	}
}

func TestOfficialClientEmbeddings(t *testing.T) {
	_, srv, _ := newTestServer(t, clientConfig())
	for name, client := range officialClients(srv) {
		t.Run(name, func(t *testing.T) {
			var vectors [][]float64
			for _, format := range []openai.EmbeddingNewParamsEncodingFormat{"", openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
				res, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
					Model:          "embed",
					Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"abcd", "efgh"}},
					Dimensions:     openai.Int(32),
					EncodingFormat: format,
				})
				if err != nil {
					t.Fatalf("format %q: %v", format, err)
				}
				if len(res.Data) != 2 || len(res.Data[1].Embedding) != 32 || res.Usage.PromptTokens != 2 {
					t.Fatalf("format %q: got %d items, %d dims, %d tokens", format, len(res.Data), len(res.Data[1].Embedding), res.Usage.PromptTokens)
				}
				vectors = append(vectors, res.Data[0].Embedding)
			}
			// JSON carries the shortest decimal of each float32 and base64 its
			// exact bits: equal once narrowed back to float32.
			for i := range vectors[0] {
				if float32(vectors[1][i]) != float32(vectors[0][i]) || float32(vectors[2][i]) != float32(vectors[0][i]) {
					t.Fatalf("[%d]: formats disagree: %v %v %v", i, vectors[0][i], vectors[1][i], vectors[2][i])
				}
			}
		})
	}
}

func TestOfficialClientResponses(t *testing.T) {
	_, srv, _ := newTestServer(t, clientConfig())
	for name, client := range officialClients(srv) {
		t.Run(name, func(t *testing.T) {
			params := responses.ResponseNewParams{
				Model:        "reason",
				Input:        responses.ResponseNewParamsInputUnion{OfString: openai.String("Tell me about rate limits.")},
				Instructions: openai.String("Be brief."),
			}
			whole, err := client.Responses.New(t.Context(), params)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if whole.Status != "completed" || whole.OutputText() == "" || whole.Usage.OutputTokensDetails.ReasoningTokens == 0 {
				t.Errorf("response: status %q, text %q, reasoning %d", whole.Status, whole.OutputText(), whole.Usage.OutputTokensDetails.ReasoningTokens)
			}

			stream := client.Responses.NewStreaming(t.Context(), params)
			var text strings.Builder
			var final responses.Response
			for stream.Next() {
				ev := stream.Current()
				switch ev.Type {
				case "response.output_text.delta":
					text.WriteString(ev.Delta)
				case "response.completed":
					final = ev.Response
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if got, want := text.String(), whole.OutputText(); got != want {
				t.Errorf("streamed text: got %q, want %q", got, want)
			}
			if got, want := final.Usage.OutputTokens, whole.Usage.OutputTokens; got != want {
				t.Errorf("streamed output_tokens: got %d, want %d", got, want)
			}

			next, err := client.Responses.New(t.Context(), responses.ResponseNewParams{
				Model:              "chat",
				Input:              responses.ResponseNewParamsInputUnion{OfString: openai.String("And then?")},
				PreviousResponseID: openai.String(final.ID),
			})
			if err != nil {
				t.Fatalf("follow-up: %v", err)
			}
			if next.Usage.InputTokens <= final.Usage.TotalTokens {
				t.Errorf("follow-up input_tokens %d, want more than the earlier turn's %d", next.Usage.InputTokens, final.Usage.TotalTokens)
			}
			got, err := client.Responses.Get(t.Context(), next.ID, responses.ResponseGetParams{})
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if got.ID != next.ID || got.OutputText() != next.OutputText() {
				t.Errorf("Get: got %q %q, want %q %q", got.ID, got.OutputText(), next.ID, next.OutputText())
			}

			_, err = client.Responses.New(t.Context(), responses.ResponseNewParams{
				Model:              "chat",
				Input:              responses.ResponseNewParamsInputUnion{OfString: openai.String("x")},
				PreviousResponseID: openai.String("resp_unknown"),
			})
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Code != "previous_response_not_found" {
				t.Errorf("unknown previous_response_id: got %v, want a 400 previous_response_not_found", err)
			}
		})
	}
}

func TestOfficialClientErrors(t *testing.T) {
	_, srv, _ := newTestServer(t, clientConfig())
	for name, client := range officialClients(srv) {
		t.Run(name, func(t *testing.T) {
			_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
				Model:    "chat",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			}, option.WithHeader(HeaderFault, "429"), option.WithHeader(HeaderRetryAfterMS, "1500"))
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("got %v, want an *openai.Error", err)
			}
			if apiErr.StatusCode != http.StatusTooManyRequests || apiErr.Code != "429" {
				t.Errorf("got %d %q, want 429 \"429\"", apiErr.StatusCode, apiErr.Code)
			}
			if got := apiErr.Response.Header.Get("retry-after-ms"); got != "1500" {
				t.Errorf("retry-after-ms: got %q, want 1500", got)
			}
			_, err = client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
				Model:    "missing",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Code != "DeploymentNotFound" {
				t.Errorf("unknown deployment: got %v, want a 404 DeploymentNotFound", err)
			}
		})
	}
}
