package tokens

import (
	"strings"
	"testing"

	"github.com/foundry-gateway/gateway/internal/openai"
)

func TestEncodingFor(t *testing.T) {
	tests := []struct {
		model, want string
	}{
		{"gpt-4o-mini", O200K},
		{"GPT-4o", O200K},
		{"o1-preview", O200K},
		{"o3-mini", O200K},
		{"o4-mini", O200K},
		{"gpt-4.1-nano", O200K},
		{"gpt-5", O200K},
		{"gpt-4", CL100K},
		{"gpt-35-turbo", CL100K},
		{"text-embedding-3-small", CL100K},
		{"my-alias", CL100K},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			if got := EncodingFor(tt.model); got != tt.want {
				t.Errorf("EncodingFor(%q) = %v, want %v", tt.model, got, tt.want)
			}
		})
	}
}

func TestPrompt(t *testing.T) {
	c := New()
	long := strings.Repeat("hello world ", 20000) // 240 KB: extrapolated
	tests := []struct {
		name  string
		op    openai.Op
		model string
		body  string
		want  int64
	}{
		// 3 (message) + 1 ("user") + 2 ("hello world") + 3 (reply).
		{"chat one message cl100k", openai.OpChat, "gpt-4", `{"messages":[{"role":"user","content":"hello world"}]}`, 9},
		{"chat one message o200k", openai.OpChat, "gpt-4o", `{"messages":[{"role":"user","content":"hello world"}]}`, 9},
		{"chat parts and name", openai.OpChat, "gpt-4",
			`{"messages":[{"role":"user","name":"bob","content":[{"type":"text","text":"hello world"},{"type":"image_url","image_url":{"url":"x"}}]}]}`,
			3 + 1 + 2 + 85 + 1 + 1 + 3},
		{"embeddings string", openai.OpEmbeddings, "text-embedding-3-small", `{"input":"hello world"}`, 2},
		{"embeddings array", openai.OpEmbeddings, "text-embedding-3-small", `{"input":["hello world","hello"]}`, 3},
		{"embeddings token ids", openai.OpEmbeddings, "text-embedding-3-small", `{"input":[[1,2,3],[4]]}`, 4},
		{"completions prompt", openai.OpCompletions, "gpt-35-turbo-instruct", `{"prompt":"hello world"}`, 2},
		{"responses string", openai.OpResponses, "gpt-4o", `{"instructions":"hello","input":"hello world"}`, 3},
		{"responses items", openai.OpResponses, "gpt-4o", `{"input":[{"role":"user","content":"hello world"}]}`, 5},
		{"not json falls back to bytes/4", openai.OpChat, "gpt-4", `{"messages":[`, 4},
		{"no messages falls back", openai.OpChat, "gpt-4", `{"model":"x"}`, 4},
		{"long text is extrapolated", openai.OpEmbeddings, "gpt-4", `{"input":"` + long + `"}`, 40000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Prompt(tt.op, tt.model, []byte(tt.body))
			if tt.name == "long text is extrapolated" {
				// Each "hello world " is 3 tokens at most; allow 2% error.
				if got < 39000 || got > 61000 {
					t.Errorf("Prompt = %v, want about %v", got, tt.want)
				}
				return
			}
			if got != tt.want {
				t.Errorf("Prompt = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPromptNeverFails(t *testing.T) {
	c := New()
	bodies := []string{``, `null`, `[]`, `"x"`, `{"messages":null}`, `{"messages":[null,1,"x",{"content":{"a":1}}]}`, "\xff\xfe"}
	for _, b := range bodies {
		for _, op := range []openai.Op{openai.OpChat, openai.OpCompletions, openai.OpEmbeddings, openai.OpResponses, "other"} {
			if got := c.Prompt(op, "gpt-4o", []byte(b)); got < 0 {
				t.Errorf("Prompt(%s, %q) = %v, want >= 0", op, b, got)
			}
		}
	}
}
