package safety

import (
	"encoding/json"
	"strings"

	"github.com/foundry-gateway/gateway/internal/openai"
)

// Texts are the parts of a prompt that are checked.
type Texts struct {
	// User is the callers' own text (user messages, the Responses string
	// input or user items, the completions prompt): analysed and shielded
	// as the user prompt.
	User string
	// Documents are third-party text (tool and function results): analysed
	// and shielded as documents.
	Documents []string
	// Other is the rest (system, developer and assistant text,
	// instructions): analysed only.
	Other []string
}

// All is every text, for text analysis.
func (t Texts) All() string {
	parts := append(append([]string{t.User}, t.Documents...), t.Other...)
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p)
	}
	return b.String()
}

// Empty reports whether there is nothing to check.
func (t Texts) Empty() bool { return t.User == "" && len(t.Documents) == 0 && len(t.Other) == 0 }

// Checked reports whether requests of op carry a prompt this package reads.
func Checked(op openai.Op) bool {
	return op == openai.OpChat || op == openai.OpCompletions || op == openai.OpResponses
}

// Extract reads the texts of a chat, completions or Responses body (the
// body was parsed already, so it is JSON). Image, audio and token-array
// parts are not text and are skipped.
func Extract(op openai.Op, body []byte) Texts {
	var t Texts
	switch op {
	case openai.OpChat:
		var b struct {
			Messages []struct {
				Role    string          `json:"role"`
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
		}
		_ = json.Unmarshal(body, &b)
		var user []string
		for _, m := range b.Messages {
			t.add(m.Role, contentText(m.Content), &user)
		}
		t.User = strings.Join(user, "\n")
	case openai.OpCompletions:
		var b struct {
			Prompt json.RawMessage `json:"prompt"`
		}
		_ = json.Unmarshal(body, &b)
		var s string
		var list []string
		if json.Unmarshal(b.Prompt, &s) == nil {
			t.User = s
		} else if json.Unmarshal(b.Prompt, &list) == nil {
			t.User = strings.Join(list, "\n")
		}
	case openai.OpResponses:
		var b struct {
			Instructions string          `json:"instructions"`
			Input        json.RawMessage `json:"input"`
		}
		_ = json.Unmarshal(body, &b)
		if b.Instructions != "" {
			t.Other = append(t.Other, b.Instructions)
		}
		var s string
		if json.Unmarshal(b.Input, &s) == nil {
			t.User = s
			break
		}
		var items []struct {
			Type    string          `json:"type"`
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
			Output  json.RawMessage `json:"output"`
		}
		_ = json.Unmarshal(b.Input, &items)
		var user []string
		for _, it := range items {
			if it.Type == "function_call_output" {
				t.add("tool", contentText(it.Output), &user)
				continue
			}
			t.add(it.Role, contentText(it.Content), &user)
		}
		t.User = strings.Join(user, "\n")
	}
	return t
}

func (t *Texts) add(role, text string, user *[]string) {
	if text == "" {
		return
	}
	switch role {
	case "user":
		*user = append(*user, text)
	case "tool", "function":
		t.Documents = append(t.Documents, text)
	default:
		t.Other = append(t.Other, text)
	}
}

// contentText reads a content field: a string, or an array of parts whose
// text parts (text, input_text, output_text) are joined.
func contentText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var out []string
	for _, p := range parts {
		if p.Text != "" {
			out = append(out, p.Text)
		}
	}
	return strings.Join(out, "\n")
}
