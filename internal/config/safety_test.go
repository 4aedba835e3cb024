package config

import (
	"strings"
	"testing"
)

func TestSafetyAndAuditConfig(t *testing.T) {
	const base = `
backends: [{ name: b, url: "https://b.openai.azure.com", auth: { none: true } }]
models: { m: { targets: [{ backend: b, deployment: d }] } }
`
	env := func(n string) string {
		if n == "GatewayContentSafetyKey" {
			return "cs-secret"
		}
		return ""
	}
	tests := []struct {
		name, yaml string
		want       string // substring of the error; "" = valid
	}{
		{"off", "", ""},
		{"rules", `contentSafety: { endpoint: "https://cs.cognitiveservices.azure.com", rules: [{ teams: [t], models: [m], thresholds: { Hate: 2 }, promptShield: true }] }`, ""},
		{"no endpoint", `contentSafety: { rules: [{ promptShield: true }] }`, "contentSafety.endpoint"},
		{"empty rule", `contentSafety: { endpoint: "https://x", rules: [{ teams: [t] }] }`, "set thresholds, promptShield or both"},
		{"unknown category", `contentSafety: { endpoint: "https://x", rules: [{ thresholds: { Profanity: 2 } }] }`, `category "Profanity"`},
		{"severity out of range", `contentSafety: { endpoint: "https://x", rules: [{ thresholds: { Hate: 9 } }] }`, "severity from 0 to 7"},
		{"unknown model", `contentSafety: { endpoint: "https://x", rules: [{ models: [nope], promptShield: true }] }`, `model "nope"`},
		{"bad fail mode", `contentSafety: { failMode: maybe }`, "contentSafety.failMode"},
		{"audit", `audit: { teams: ["*"], redactPII: true, redact: ["x[0-9]+"] }`, ""},
		{"audit bad regex", `audit: { teams: [t], redact: ["("] }`, "audit.redact"},
		{"audit unknown model", `audit: { models: [nope] }`, `audit.models: "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(base+tt.yaml), env)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				if c.ContentSafety.Timeout.D().Seconds() != 2 || c.ContentSafety.FailMode != FailClosed || c.ContentSafety.Key.Reveal() != "cs-secret" ||
					c.Audit.Container != "audit" || c.Audit.SpoolPath == "" {
					t.Errorf("defaults: %+v %+v", c.ContentSafety, c.Audit)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
	a := AuditConfig{Teams: []string{"t"}, Models: []string{"m"}}
	if !a.Audits("t", "x") || !a.Audits("u", "m") || a.Audits("u", "x") || !(AuditConfig{Teams: []string{"*"}}).Audits("u", "x") {
		t.Error("Audits does not match teams, models and *")
	}
	s := SafetyConfig{Rules: []SafetyRule{{Teams: []string{"t"}, PromptShield: true}, {Models: []string{"m"}}}}
	if r, ok := s.Rule("t", "m"); !ok || !r.PromptShield {
		t.Error("the first matching rule does not win")
	}
	if _, ok := s.Rule("u", "x"); ok {
		t.Error("a rule matched a team and model it does not name")
	}
}
