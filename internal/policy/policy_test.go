package policy

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/openai"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		s       Scope
		wantErr string // "" = valid
	}{
		{"zero", Scope{}, ""},
		{"full", Scope{Models: []string{"gpt-4o", "o3-mini"}, Regions: []string{"swedencentral", "west_europe.1"},
			Class: ClassBatch, MaxOutputTokens: 4096, OverCap: Reject, MaxN: 4, Admin: true}, ""},
		{"interactive clamp", Scope{Class: ClassInteractive, MaxOutputTokens: 1, OverCap: Clamp}, ""},
		{"empty model", Scope{Models: []string{""}}, "model alias"},
		{"model with comma", Scope{Models: []string{"a,b"}}, "model alias"},
		{"model with space", Scope{Models: []string{"a b"}}, "model alias"},
		{"model with newline", Scope{Models: []string{"a\n"}}, "model alias"},
		{"model too long", Scope{Models: []string{strings.Repeat("m", 129)}}, "model alias"},
		{"model at length limit", Scope{Models: []string{strings.Repeat("m", 128)}}, ""},
		{"empty region", Scope{Regions: []string{""}}, "region"},
		{"region with space", Scope{Regions: []string{"west europe"}}, "region"},
		{"region too long", Scope{Regions: []string{strings.Repeat("r", 65)}}, "region"},
		{"unknown class", Scope{Class: "gold"}, "class"},
		{"unknown overCap", Scope{MaxOutputTokens: 10, OverCap: "drop"}, "overCap"},
		{"negative maxOutputTokens", Scope{MaxOutputTokens: -1}, "maxOutputTokens"},
		{"negative maxN", Scope{MaxN: -1}, "maxN"},
		{"overCap without maxOutputTokens", Scope{OverCap: Reject}, "overCap needs maxOutputTokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want ErrInvalid containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestAllowsModelAndClass(t *testing.T) {
	if !(Scope{}).AllowsModel("anything") {
		t.Error("the zero scope must allow every model")
	}
	s := Scope{Models: []string{"a", "b"}}
	if !s.AllowsModel("b") || s.AllowsModel("c") || s.AllowsModel("") {
		t.Errorf("AllowsModel with %v is wrong", s.Models)
	}
	if got, want := (Scope{}).ClassOrDefault(), ClassInteractive; got != want {
		t.Errorf("ClassOrDefault: got %v, want %v", got, want)
	}
	if got, want := (Scope{Class: ClassBatch}).ClassOrDefault(), ClassBatch; got != want {
		t.Errorf("ClassOrDefault: got %v, want %v", got, want)
	}
}

// parseReq parses body as the handlers do: dated api-versions address a
// deployment in the path (pathModel), anything else is the v1 style.
func parseReq(t *testing.T, op openai.Op, apiVersion, pathModel string, body []byte) openai.Request {
	t.Helper()
	style := openai.StyleV1
	if pathModel != "" {
		style = openai.StyleDeployment
	}
	r, err := openai.Parse(op, style, pathModel, apiVersion, body)
	if err != nil {
		t.Fatalf("parse %s: %v", body, err)
	}
	return r
}

func TestAdmit(t *testing.T) {
	capped := Scope{MaxOutputTokens: 1000}
	reject := Scope{MaxOutputTokens: 1000, OverCap: Reject}
	const (
		chat  = `{"model":"gpt","messages":[{"role":"user","content":"hi"}]`
		compl = `{"model":"gpt","prompt":"hi"`
		resp  = `{"model":"gpt","input":"hi"`
		emb   = `{"model":"gpt","input":"hi"`
	)
	tests := []struct {
		name       string
		s          Scope
		op         openai.Op
		apiVersion string
		pathModel  string // set: deployment style
		async      bool
		body       string
		// Refusals.
		wantStatus int
		wantCode   string
		wantParam  string
		// Success.
		wantClamped   string
		wantFields    map[string]any // output-token fields of the result; nil value = absent
		wantMaxOutput int64          // req.MaxOutput afterwards; -1 = not checked
		unchanged     bool           // the result is the input, byte for byte
	}{
		// Model.
		{name: "model in scope", s: Scope{Models: []string{"gpt", "o3"}}, op: openai.OpChat, body: chat + `}`, unchanged: true},
		{name: "model outside scope", s: Scope{Models: []string{"o3", "emb"}}, op: openai.OpChat, body: chat + `}`,
			wantStatus: 403, wantCode: "model_not_allowed", wantParam: "model"},
		{name: "deployment in path outside scope", s: Scope{Models: []string{"gpt"}}, op: openai.OpChat, apiVersion: "2024-10-21",
			pathModel: "o3", body: chat + `}`, wantStatus: 403, wantCode: "model_not_allowed", wantParam: "model"},
		{name: "model refused even async", s: Scope{Models: []string{"o3"}}, op: openai.OpEmbeddings, async: true, body: emb + `}`,
			wantStatus: 403, wantCode: "model_not_allowed", wantParam: "model"},

		// Priority class.
		{name: "batch class sync refused", s: Scope{Class: ClassBatch}, op: openai.OpChat, body: chat + `}`,
			wantStatus: 403, wantCode: "priority_class_forbidden"},
		{name: "batch class async allowed", s: Scope{Class: ClassBatch}, op: openai.OpChat, async: true, body: chat + `}`, unchanged: true},
		{name: "interactive class sync allowed", s: Scope{Class: ClassInteractive}, op: openai.OpChat, body: chat + `}`, unchanged: true},
		{name: "interactive class async allowed", s: Scope{Class: ClassInteractive}, op: openai.OpChat, async: true, body: chat + `}`, unchanged: true},

		// n and best_of.
		{name: "n above maxN", s: Scope{MaxN: 2}, op: openai.OpChat, body: chat + `,"n":3}`,
			wantStatus: 400, wantCode: "parameter_above_limit", wantParam: "n"},
		{name: "huge n above maxN", s: Scope{MaxN: 2}, op: openai.OpChat, body: chat + `,"n":1e30}`,
			wantStatus: 400, wantCode: "parameter_above_limit", wantParam: "n"},
		{name: "n at maxN", s: Scope{MaxN: 2}, op: openai.OpChat, body: chat + `,"n":2}`, unchanged: true},
		{name: "n without maxN", s: Scope{}, op: openai.OpChat, body: chat + `,"n":128}`, unchanged: true},
		{name: "best_of above maxN", s: Scope{MaxN: 2}, op: openai.OpCompletions, body: compl + `,"n":1,"best_of":5}`,
			wantStatus: 400, wantCode: "parameter_above_limit", wantParam: "best_of"},
		{name: "best_of at maxN", s: Scope{MaxN: 2}, op: openai.OpCompletions, body: compl + `,"n":2,"best_of":2}`, unchanged: true},

		// Clamp.
		{name: "chat max_tokens clamped", s: capped, op: openai.OpChat, body: chat + `,"max_tokens":5000}`,
			wantClamped: "max_tokens", wantFields: map[string]any{"max_tokens": int64(1000), "max_completion_tokens": nil}, wantMaxOutput: 1000},
		{name: "chat max_completion_tokens clamped", s: capped, op: openai.OpChat, body: chat + `,"max_completion_tokens":5000}`,
			wantClamped: "max_completion_tokens", wantFields: map[string]any{"max_completion_tokens": int64(1000), "max_tokens": nil}, wantMaxOutput: 1000},
		{name: "chat both clamped", s: capped, op: openai.OpChat, body: chat + `,"max_completion_tokens":5000,"max_tokens":6000}`,
			wantClamped: "max_completion_tokens,max_tokens", wantFields: map[string]any{"max_completion_tokens": int64(1000), "max_tokens": int64(1000)}, wantMaxOutput: 1000},
		{name: "chat both, only max_tokens above", s: capped, op: openai.OpChat, body: chat + `,"max_completion_tokens":500,"max_tokens":6000}`,
			wantClamped: "max_tokens", wantFields: map[string]any{"max_completion_tokens": int64(500), "max_tokens": int64(1000)}, wantMaxOutput: 500},
		{name: "chat deployment style clamped", s: capped, op: openai.OpChat, apiVersion: "2024-06-01", pathModel: "gpt", body: chat + `,"max_tokens":1001}`,
			wantClamped: "max_tokens", wantFields: map[string]any{"max_tokens": int64(1000), "max_completion_tokens": nil}, wantMaxOutput: 1000},
		{name: "completions max_tokens clamped", s: capped, op: openai.OpCompletions, body: compl + `,"max_tokens":5000}`,
			wantClamped: "max_tokens", wantFields: map[string]any{"max_tokens": int64(1000)}, wantMaxOutput: 1000},
		{name: "responses max_output_tokens clamped", s: capped, op: openai.OpResponses, body: resp + `,"max_output_tokens":5000}`,
			wantClamped: "max_output_tokens", wantFields: map[string]any{"max_output_tokens": int64(1000)}, wantMaxOutput: 1000},
		{name: "huge integer clamped", s: capped, op: openai.OpChat, body: chat + `,"max_tokens":99999999999999999999}`,
			wantClamped: "max_tokens", wantFields: map[string]any{"max_tokens": int64(1000)}, wantMaxOutput: 1000},
		{name: "huge float clamped", s: capped, op: openai.OpChat, body: chat + `,"max_completion_tokens":1e30}`,
			wantClamped: "max_completion_tokens", wantFields: map[string]any{"max_completion_tokens": int64(1000)}, wantMaxOutput: 1000},
		{name: "explicit clamp mode", s: Scope{MaxOutputTokens: 1000, OverCap: Clamp}, op: openai.OpChat, body: chat + `,"max_tokens":5000}`,
			wantClamped: "max_tokens", wantFields: map[string]any{"max_tokens": int64(1000)}, wantMaxOutput: 1000},

		// Reject.
		{name: "reject chat max_tokens", s: reject, op: openai.OpChat, body: chat + `,"max_tokens":5000}`,
			wantStatus: 400, wantCode: "parameter_above_limit", wantParam: "max_tokens"},
		{name: "reject chat max_completion_tokens", s: reject, op: openai.OpChat, body: chat + `,"max_completion_tokens":1001}`,
			wantStatus: 400, wantCode: "parameter_above_limit", wantParam: "max_completion_tokens"},
		{name: "reject completions max_tokens", s: reject, op: openai.OpCompletions, body: compl + `,"max_tokens":5000}`,
			wantStatus: 400, wantCode: "parameter_above_limit", wantParam: "max_tokens"},
		{name: "reject responses max_output_tokens", s: reject, op: openai.OpResponses, body: resp + `,"max_output_tokens":5000}`,
			wantStatus: 400, wantCode: "parameter_above_limit", wantParam: "max_output_tokens"},
		{name: "reject mode at cap", s: reject, op: openai.OpChat, body: chat + `,"max_tokens":1000}`, unchanged: true, wantMaxOutput: 1000},

		// Cap set when absent.
		{name: "inject chat no api-version", s: capped, op: openai.OpChat, body: chat + `}`,
			wantClamped: "max_completion_tokens", wantFields: map[string]any{"max_completion_tokens": int64(1000), "max_tokens": nil}, wantMaxOutput: 1000},
		{name: "inject chat api-version v1", s: capped, op: openai.OpChat, apiVersion: "v1", body: chat + `}`,
			wantClamped: "max_completion_tokens", wantFields: map[string]any{"max_completion_tokens": int64(1000), "max_tokens": nil}, wantMaxOutput: 1000},
		{name: "inject chat api-version 2024-06-01", s: capped, op: openai.OpChat, apiVersion: "2024-06-01", pathModel: "gpt", body: chat + `}`,
			wantClamped: "max_tokens", wantFields: map[string]any{"max_tokens": int64(1000), "max_completion_tokens": nil}, wantMaxOutput: 1000},
		{name: "inject chat api-version 2024-10-21", s: capped, op: openai.OpChat, apiVersion: "2024-10-21", pathModel: "gpt", body: chat + `}`,
			wantClamped: "max_completion_tokens", wantFields: map[string]any{"max_completion_tokens": int64(1000), "max_tokens": nil}, wantMaxOutput: 1000},
		{name: "inject chat over null", s: capped, op: openai.OpChat, body: chat + `,"max_completion_tokens":null}`,
			wantClamped: "max_completion_tokens", wantFields: map[string]any{"max_completion_tokens": int64(1000)}, wantMaxOutput: 1000},
		{name: "inject completions", s: capped, op: openai.OpCompletions, body: compl + `}`,
			wantClamped: "max_tokens", wantFields: map[string]any{"max_tokens": int64(1000), "max_completion_tokens": nil}, wantMaxOutput: 1000},
		{name: "inject responses", s: capped, op: openai.OpResponses, body: resp + `}`,
			wantClamped: "max_output_tokens", wantFields: map[string]any{"max_output_tokens": int64(1000), "max_tokens": nil}, wantMaxOutput: 1000},
		{name: "inject in reject mode", s: reject, op: openai.OpChat, apiVersion: "2024-06-01", pathModel: "gpt", body: chat + `}`,
			wantClamped: "max_tokens", wantFields: map[string]any{"max_tokens": int64(1000)}, wantMaxOutput: 1000},

		// Untouched.
		{name: "embeddings untouched", s: Scope{MaxOutputTokens: 1000, MaxN: 1}, op: openai.OpEmbeddings, body: emb + `,"dimensions":256}`,
			unchanged: true, wantMaxOutput: 0},
		{name: "chat below cap", s: capped, op: openai.OpChat, body: chat + `,"max_tokens":999}`, unchanged: true, wantMaxOutput: 999},
		{name: "chat at cap", s: capped, op: openai.OpChat, body: chat + `,"max_completion_tokens":1000}`, unchanged: true, wantMaxOutput: 1000},
		{name: "chat both at or below cap", s: capped, op: openai.OpChat, body: chat + `,"max_completion_tokens":1000, "max_tokens" : 10}`,
			unchanged: true, wantMaxOutput: 1000},
		{name: "responses below cap", s: capped, op: openai.OpResponses, body: resp + `,"max_output_tokens":1}`, unchanged: true, wantMaxOutput: 1},
		{name: "no cap", s: Scope{}, op: openai.OpChat, body: chat + `,"max_tokens":1000000}`, unchanged: true, wantMaxOutput: 1000000},
		{name: "non-number left to the backend", s: capped, op: openai.OpChat, body: chat + `,"max_tokens":"lots"}`, unchanged: true, wantMaxOutput: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Spare capacity, so an append into the caller's array would show.
			body := append(make([]byte, 0, len(tt.body)+512), tt.body...)
			orig := bytes.Clone(body)
			req := parseReq(t, tt.op, tt.apiVersion, tt.pathModel, body)
			out, clamped, err := tt.s.Admit(&req, tt.async, body)

			if !bytes.Equal(body, orig) || !bytes.Equal(body[len(body):cap(body)], make([]byte, cap(body)-len(body))) {
				t.Fatalf("Admit modified its input in place: %q", body[:cap(body)])
			}
			if tt.wantStatus != 0 {
				if err == nil {
					t.Fatalf("got nil error and body %s, want %d %s", out, tt.wantStatus, tt.wantCode)
				}
				he := httperr.From(err)
				if he.Status != tt.wantStatus || he.Code != tt.wantCode || he.Param != tt.wantParam {
					t.Fatalf("got %d %s param %q (%v), want %d %s param %q", he.Status, he.Code, he.Param, err, tt.wantStatus, tt.wantCode, tt.wantParam)
				}
				if he.Msg == "" {
					t.Error("refusal without a client message")
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want nil", err)
			}
			if clamped != tt.wantClamped {
				t.Errorf("clamped: got %q, want %q", clamped, tt.wantClamped)
			}
			if tt.wantMaxOutput >= 0 && req.MaxOutput != tt.wantMaxOutput {
				t.Errorf("req.MaxOutput: got %d, want %d", req.MaxOutput, tt.wantMaxOutput)
			}
			if tt.unchanged {
				if !bytes.Equal(out, orig) {
					t.Errorf("body changed:\n got %s\nwant %s", out, orig)
				}
				return
			}
			if !gjson.ValidBytes(out) {
				t.Fatalf("result is not JSON: %s", out)
			}
			root := gjson.ParseBytes(out)
			for f, want := range tt.wantFields {
				v := root.Get(f)
				switch {
				case want == nil && v.Exists() && v.Type != gjson.Null:
					t.Errorf("%s: got %s, want absent", f, v.Raw)
				case want != nil && (v.Type != gjson.Number || v.Int() != want.(int64)):
					t.Errorf("%s: got %s, want %d", f, v.Raw, want)
				}
			}
			// Everything else survives the rewrite.
			for _, f := range []string{"model", "messages", "prompt", "input"} {
				if got, want := root.Get(f).Raw, gjson.GetBytes(orig, f).Raw; got != want {
					t.Errorf("%s: got %s, want %s", f, got, want)
				}
			}
			// The result does not share the caller's array.
			for i := range out {
				out[i] = 'x'
			}
			if !bytes.Equal(body, orig) {
				t.Error("the rewritten body shares memory with the input")
			}
		})
	}
}

// TestAdmitOrder checks which refusal wins when several apply: scope
// (403) before parameters (400).
func TestAdmitOrder(t *testing.T) {
	s := Scope{Models: []string{"o3"}, Class: ClassBatch, MaxN: 1, MaxOutputTokens: 10, OverCap: Reject}
	tests := []struct {
		name, body string
		async      bool
		wantCode   string
	}{
		{"model first", `{"model":"gpt","messages":[],"n":5,"max_tokens":99}`, false, "model_not_allowed"},
		{"class second", `{"model":"o3","messages":[],"n":5,"max_tokens":99}`, false, "priority_class_forbidden"},
		{"n third", `{"model":"o3","messages":[],"n":5,"max_tokens":99}`, true, "parameter_above_limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := parseReq(t, openai.OpChat, "", "", []byte(tt.body))
			_, _, err := s.Admit(&req, tt.async, []byte(tt.body))
			if got := httperr.From(err).Code; got != tt.wantCode {
				t.Fatalf("got %s (%v), want %s", got, err, tt.wantCode)
			}
		})
	}
}

// A model's caps apply to every caller; a scope only tightens them.
func TestWithCaps(t *testing.T) {
	tests := []struct {
		name  string
		scope Scope
		caps  Caps
		want  Scope
	}{
		{"no caps", Scope{MaxOutputTokens: 100, MaxN: 2}, Caps{}, Scope{MaxOutputTokens: 100, MaxN: 2}},
		{"model caps an open scope", Scope{}, Caps{MaxOutputTokens: 50, OverCap: Reject, MaxN: 1}, Scope{MaxOutputTokens: 50, OverCap: Reject, MaxN: 1}},
		{"lower model cap binds with its overCap", Scope{MaxOutputTokens: 100, OverCap: Reject}, Caps{MaxOutputTokens: 50}, Scope{MaxOutputTokens: 50}},
		{"lower scope cap keeps its overCap", Scope{MaxOutputTokens: 20}, Caps{MaxOutputTokens: 50, OverCap: Reject}, Scope{MaxOutputTokens: 20}},
		{"equal caps: reject wins", Scope{MaxOutputTokens: 50}, Caps{MaxOutputTokens: 50, OverCap: Reject}, Scope{MaxOutputTokens: 50, OverCap: Reject}},
		{"lower n wins", Scope{MaxN: 4}, Caps{MaxN: 2}, Scope{MaxN: 2}},
		{"scope n lower", Scope{MaxN: 1}, Caps{MaxN: 2}, Scope{MaxN: 1}},
		{"other fields kept", Scope{Models: []string{"m"}, Admin: true}, Caps{MaxN: 3}, Scope{Models: []string{"m"}, Admin: true, MaxN: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.scope.WithCaps(tt.caps); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if err := (Caps{OverCap: Reject}).Validate(); err == nil {
		t.Error("overCap without a cap: want an error")
	}
}

func TestUsageReadIsAlone(t *testing.T) {
	if err := (Scope{UsageRead: true}).Validate(); err != nil {
		t.Errorf("usage:read alone: %v", err)
	}
	for _, s := range []Scope{{UsageRead: true, Admin: true}, {UsageRead: true, Models: []string{"m"}}, {UsageRead: true, MaxN: 1}} {
		if err := s.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", s, err)
		}
	}
}
