package openai

import (
	"errors"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/foundry-gateway/gateway/internal/jsonkey"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		op      Op
		style   Style
		path    string
		body    string
		want    Request
		wantErr error
	}{
		{"v1 chat", OpChat, StyleV1, "", `{"model":"m","messages":[],"stream":true,"max_tokens":5}`,
			Request{Op: OpChat, Model: "m", Stream: true, MaxOutput: 5, N: 1}, nil},
		{"v1 chat completion cap wins order", OpChat, StyleV1, "", `{"model":"m","messages":[],"max_completion_tokens":7,"n":3,"stream_options":{"include_usage":true}}`,
			Request{Op: OpChat, Model: "m", MaxOutput: 7, N: 3, IncludeUsage: true}, nil},
		{"deployment style", OpEmbeddings, StyleDeployment, "emb", `{"input":"x"}`,
			Request{Op: OpEmbeddings, Style: StyleDeployment, Model: "emb", N: 1}, nil},
		{"responses", OpResponses, StyleV1, "", `{"model":"m","input":"hi","max_output_tokens":9,"previous_response_id":"resp_1"}`,
			Request{Op: OpResponses, Model: "m", MaxOutput: 9, N: 1, PreviousResponseID: "resp_1"}, nil},
		{"not json", OpChat, StyleV1, "", `{"model":`, Request{}, ErrMalformed},
		{"array", OpChat, StyleV1, "", `[1]`, Request{}, ErrMalformed},
		{"no model", OpChat, StyleV1, "", `{"messages":[]}`, Request{}, ErrMissing},
		{"model not string", OpChat, StyleV1, "", `{"model":1,"messages":[]}`, Request{}, ErrMissing},
		{"no messages", OpChat, StyleV1, "", `{"model":"m"}`, Request{}, ErrMissing},
		{"no input", OpEmbeddings, StyleV1, "", `{"model":"m"}`, Request{}, ErrMissing},
		{"no prompt", OpCompletions, StyleV1, "", `{"model":"m"}`, Request{}, ErrMissing},
		// Issue #16: the caps read the first value, the backend the last.
		{"duplicate max_tokens", OpChat, StyleV1, "", `{"model":"m","messages":[],"max_tokens":5,"max_tokens":500}`, Request{}, jsonkey.ErrDuplicate},
		{"duplicate max_completion_tokens", OpChat, StyleV1, "", `{"model":"m","messages":[],"max_completion_tokens":5,"max_completion_tokens":500}`, Request{}, jsonkey.ErrDuplicate},
		{"duplicate n", OpChat, StyleV1, "", `{"model":"m","messages":[],"n":1,"n":3}`, Request{}, jsonkey.ErrDuplicate},
		{"duplicate model", OpChat, StyleV1, "", `{"model":"cheap","messages":[],"model":"dear"}`, Request{}, jsonkey.ErrDuplicate},
		{"duplicate nested", OpChat, StyleV1, "", `{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}`, Request{}, jsonkey.ErrDuplicate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.op, tt.style, tt.path, "", []byte(tt.body))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if errors.Is(err, jsonkey.ErrDuplicate) && !strings.Contains(err.Error(), `duplicate key "`) {
				t.Errorf("error %q does not name the key", err)
			}
			if err == nil && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCanIncludeUsage(t *testing.T) {
	tests := map[string]bool{
		"": true, "v1": true, "preview": true, "2024-10-21": true, "2024-09-01-preview": true,
		"2025-04-01-preview": true, "2024-08-01-preview": false, "2024-06-01": false, "2023-05-15": false, "junk": false,
	}
	for v, want := range tests {
		if got := CanIncludeUsage(v); got != want {
			t.Errorf("CanIncludeUsage(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestNeedsUsageInjection(t *testing.T) {
	tests := []struct {
		name string
		r    Request
		want bool
	}{
		{"stream chat v1", Request{Op: OpChat, Stream: true}, true},
		{"client asked", Request{Op: OpChat, Stream: true, IncludeUsage: true}, false},
		{"not stream", Request{Op: OpChat}, false},
		{"old api", Request{Op: OpChat, Stream: true, APIVersion: "2024-06-01"}, false},
		{"responses has usage anyway", Request{Op: OpResponses, Stream: true}, false},
		{"legacy completions", Request{Op: OpCompletions, Stream: true, APIVersion: "2024-10-21"}, true},
	}
	for _, tt := range tests {
		if got := tt.r.NeedsUsageInjection(); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRewrites(t *testing.T) {
	b, err := InjectIncludeUsage([]byte(`{"model":"a","stream":true,"stream_options":{"x":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !gjson.GetBytes(b, "stream_options.include_usage").Bool() || gjson.GetBytes(b, "stream_options.x").Int() != 1 {
		t.Errorf("inject: %s", b)
	}
	b, err = SetModel(b, "dep")
	if err != nil {
		t.Fatal(err)
	}
	if gjson.GetBytes(b, "model").Str != "dep" {
		t.Errorf("set model: %s", b)
	}
}
