package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/policy"
)

const identityBase = `backends: [{name: b, url: "http://h", auth: {none: true}}]
models: {m: {targets: [{backend: b}]}}
`

func TestIdentityParse(t *testing.T) {
	c, err := Parse([]byte(identityBase+`
identity:
  issuers:
    - issuer: https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0
      audience: api://foundry-gateway
  rules:
    - claims: {roles: Gateway.Invoke, tid: 11111111-2222-3333-4444-555555555555}
      team: research
      appFromClaim: azp
      regions: [swedencentral]
`), envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	id := c.Identity
	if got, want := len(id.Issuers), 1; got != want {
		t.Fatalf("issuers: got %v, want %v", got, want)
	}
	if got, want := id.Issuers[0].AllAudiences(), []string{"api://foundry-gateway"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("audiences: got %v, want %v", got, want)
	}
	if got, want := id.Rules[0].Claims["roles"], "Gateway.Invoke"; got != want {
		t.Errorf("rule claim: got %v, want %v", got, want)
	}
	if got, want := id.ClockSkew.D(), 60*time.Second; got != want {
		t.Errorf("clockSkew default: got %v, want %v", got, want)
	}
	if got, want := id.JWKSRefreshMin.D(), 30*time.Second; got != want {
		t.Errorf("jwksRefreshMin default: got %v, want %v", got, want)
	}
}

func TestIdentityInvalid(t *testing.T) {
	iss := "  issuers: [{issuer: \"https://idp.example/t\", audience: api://gw}]\n"
	rule := "  rules: [{claims: {azp: x}, team: t, app: a}]\n"
	tests := []struct{ name, yaml, wantErr string }{
		{"rules without issuers", "identity:\n" + rule, "without identity.issuers"},
		{"issuers without rules", "identity:\n" + iss, "without identity.rules"},
		{"http issuer", "identity:\n  issuers: [{issuer: \"http://idp.example/t\", audience: a}]\n" + rule, "must use https"},
		{"relative issuer", "identity:\n  issuers: [{issuer: \"idp/t\", audience: a}]\n" + rule, "absolute URL"},
		{"no audience", "identity:\n  issuers: [{issuer: \"https://idp.example/t\"}]\n" + rule, "audience is required"},
		{"duplicate issuer", "identity:\n  issuers: [{issuer: \"https://i.example\", audience: a}, {issuer: \"https://i.example\", audience: b}]\n" + rule, "duplicate issuer"},
		{"rule for unknown issuer", "identity:\n" + iss + "  rules: [{issuer: \"https://other.example\", claims: {azp: x}, team: t, app: a}]\n", "not in identity.issuers"},
		{"catch-all rule", "identity:\n" + iss + "  rules: [{team: t, app: a}]\n", "needs claims or an issuer"},
		{"no team", "identity:\n" + iss + "  rules: [{claims: {azp: x}, app: a}]\n", "team is required"},
		{"app and appFromClaim", "identity:\n" + iss + "  rules: [{claims: {azp: x}, team: t, app: a, appFromClaim: azp}]\n", "exactly one of app and appFromClaim"},
		{"no app", "identity:\n" + iss + "  rules: [{claims: {azp: x}, team: t}]\n", "exactly one of app and appFromClaim"},
		{"negative refresh", "identity:\n" + iss + rule + "  jwksRefreshMin: -1s\n", "jwksRefreshMin"},
		{"huge skew", "identity:\n" + iss + rule + "  clockSkew: 1h\n", "clockSkew"},
		{"unknown field", "identity:\n" + iss + rule + "  bogus: 1\n", "bogus"},
		{"unknown rule field", "identity:\n" + iss + "  rules: [{claims: {azp: x}, team: t, app: a, maxTokens: 5}]\n", "maxTokens"},
		{"invalid class", "identity:\n" + iss + "  rules: [{claims: {azp: x}, team: t, app: a, class: gold}]\n", `class "gold"`},
		{"invalid overCap", "identity:\n" + iss + "  rules: [{claims: {azp: x}, team: t, app: a, maxOutputTokens: 5, overCap: drop}]\n", `overCap "drop"`},
		{"overCap without cap", "identity:\n" + iss + "  rules: [{claims: {azp: x}, team: t, app: a, overCap: reject}]\n", "overCap needs maxOutputTokens"},
		{"negative maxN", "identity:\n" + iss + "  rules: [{claims: {azp: x}, team: t, app: a, maxN: -1}]\n", "maxN"},
		{"invalid region", "identity:\n" + iss + "  rules: [{claims: {azp: x}, team: t, app: a, regions: [\"west europe\"]}]\n", "identity.rules[0]: invalid scope: region"},
		{"rule model not in models", "identity:\n" + iss + "  rules: [{claims: {azp: x}, team: t, app: a}, {claims: {azp: y}, team: t, app: a, models: [m, gpt-5]}]\n",
			`identity.rules[1]: model "gpt-5" is not in models`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(identityBase+tt.yaml), envMap(nil))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestIdentityLoopbackHTTPAllowed(t *testing.T) {
	_, err := Parse([]byte(identityBase+`
identity:
  issuers: [{issuer: "http://127.0.0.1:8443/t", audience: a}]
  rules: [{issuer: "http://127.0.0.1:8443/t", team: t, app: a}]
`), envMap(nil))
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
}

// TestIdentityRuleScope: the scope fields are written inline in a rule.
func TestIdentityRuleScope(t *testing.T) {
	c, err := Parse([]byte(identityBase+`
identity:
  issuers: [{issuer: "https://idp.example/t", audience: api://gw}]
  rules:
    - claims: {roles: Gateway.Batch}
      team: research
      app: pipeline
      models: [m]
      regions: [swedencentral, westeurope]
      class: batch
      maxOutputTokens: 2048
      overCap: reject
      maxN: 2
      admin: true
    - claims: {roles: Gateway.Invoke}
      team: research
      appFromClaim: azp
`), envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  policy.Scope
		want policy.Scope
	}{
		{"every field", c.Identity.Rules[0].Scope, policy.Scope{Models: []string{"m"}, Regions: []string{"swedencentral", "westeurope"},
			Class: policy.ClassBatch, MaxOutputTokens: 2048, OverCap: policy.Reject, MaxN: 2, Admin: true}},
		{"none", c.Identity.Rules[1].Scope, policy.Scope{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %+v, want %+v", tt.got, tt.want)
			}
		})
	}
	if r := c.Identity.Rules[0]; r.Team != "research" || r.App != "pipeline" || r.Claims["roles"] != "Gateway.Batch" {
		t.Errorf("rule fields beside the scope: %+v", r)
	}
}

// TestAdminTeamsRefused: auth.adminTeams gave way to the admin scope; a
// config still setting it must fail and say what replaces it.
func TestAdminTeamsRefused(t *testing.T) {
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"set", "auth: {adminTeams: [platform]}\n", "admin scope"},
		{"empty list is fine", "auth: {adminTeams: []}\n", ""},
		{"unset is fine", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(identityBase+tt.yaml), envMap(nil))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "auth.adminTeams") {
				t.Fatalf("got %v, want an auth.adminTeams error mentioning %q", err, tt.wantErr)
			}
		})
	}
}
