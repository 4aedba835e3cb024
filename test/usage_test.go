package test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

// TestUsageMatchesSimulator: the tokens the gateway extracts for every call
// (plain, streamed with and without client-requested usage, Responses,
// embeddings) equal the simulator's own record.
func TestUsageMatchesSimulator(t *testing.T) {
	s := startStack(t, stackOptions{})
	ctx := context.Background()
	c := clients(s)["v1"]
	az := clients(s)["azure"]
	if _, err := c.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "usage one")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Chat.Completions.New(ctx, chatParams("o4-mini", "reasoning please")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []openai.ChatCompletionNewParams{chatParams("gpt-4o-mini", "stream no usage"), chatParams("o4-mini", "stream reasoning")} {
		st := c.Chat.Completions.NewStreaming(ctx, p)
		for st.Next() {
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
	}
	st := az.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o-mini", "azure stream"))
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-4o-mini",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("responses usage")}}); err != nil {
		t.Fatal(err)
	}
	rs := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "gpt-4o-mini",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("responses stream usage")}})
	for rs.Next() {
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("embed me please")}}, option.WithMaxRetries(0)); err != nil {
		t.Fatal(err)
	}
	const calls = 8

	type totals struct {
		Requests         int64 `json:"requests"`
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
		CachedTokens     int64 `json:"cached_tokens"`
		ReasoningTokens  int64 `json:"reasoning_tokens"`
	}
	resp, err := (&http.Client{}).Get(s.SimURL + "/sim/usage")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var sim map[string]totals
	if err := json.Unmarshal(b, &sim); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	var want totals
	for _, v := range sim {
		want.Requests += v.Requests
		want.PromptTokens += v.PromptTokens
		want.CompletionTokens += v.CompletionTokens
		want.ReasoningTokens += v.ReasoningTokens
		want.CachedTokens += v.CachedTokens
	}

	// The request log is written after the response completes; allow a moment.
	var got totals
	var lines []map[string]any
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		lines = s.GW.LogLines("request")
		if len(lines) >= calls {
			break
		}
	}
	for _, l := range lines {
		if l["usage_reported"] != true {
			t.Errorf("usage not reported for %v %v stream=%v", l["op"], l["model"], l["stream"])
		}
		got.Requests++
		got.PromptTokens += int64(l["prompt_tokens"].(float64))
		got.CompletionTokens += int64(l["completion_tokens"].(float64))
		got.ReasoningTokens += int64(l["reasoning_tokens"].(float64))
		got.CachedTokens += int64(l["cached_tokens"].(float64))
	}
	if got != want || got.Requests != calls {
		t.Errorf("gateway usage %+v, simulator %+v (want %d requests)", got, want, calls)
	}
	if want.ReasoningTokens == 0 {
		t.Error("test should include reasoning tokens")
	}
}
