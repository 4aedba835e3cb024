package config

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
)

// SafetyConfig puts Azure AI Content Safety in front of models, per team
// and per model (issue #19). Without rules nothing is checked.
type SafetyConfig struct {
	// Endpoint of the Content Safety (or Azure AI services) resource,
	// https://<name>.cognitiveservices.azure.com. Required with rules.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// KeySetting names the app setting that holds the resource key (sent as
	// Ocp-Apim-Subscription-Key). When that setting is empty the gateway
	// authenticates with its managed identity (ClientIDSetting), which
	// needs the Cognitive Services User role on the resource.
	// Default GatewayContentSafetyKey.
	KeySetting string `yaml:"keySetting" json:"keySetting"`
	// ClientIDSetting names the app setting with a user-assigned identity's
	// client id; empty setting = DefaultAzureCredential. Default
	// GatewayContentSafetyClientId.
	ClientIDSetting string `yaml:"clientIdSetting" json:"clientIdSetting"`
	// Timeout bounds all the checks of one request. Default 2s.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// FailMode is closed (default: refuse with 503
	// content_safety_unavailable) or open (forward unchecked, counted in
	// telemetry) when the service is down or slower than Timeout.
	FailMode FailMode `yaml:"failMode" json:"failMode"`
	// Rules say which requests are checked and how; the first rule whose
	// teams and models both match a request applies.
	Rules []SafetyRule `yaml:"rules" json:"rules"`

	// Resolved from the environment by Load.
	Key      Secret `yaml:"-" json:"-"`
	ClientID string `yaml:"-" json:"-"`
}

// SafetyRule is one content safety policy.
type SafetyRule struct {
	// Teams the rule applies to; empty = every team.
	Teams []string `yaml:"teams" json:"teams"`
	// Models (aliases) the rule applies to; empty = every model.
	Models []string `yaml:"models" json:"models"`
	// Thresholds block a prompt whose severity in a category (Hate,
	// SelfHarm, Sexual, Violence; 0, 2, 4 or 6) is at or above the value.
	// A category left out is not analysed. Empty = no text analysis.
	Thresholds map[string]int `yaml:"thresholds" json:"thresholds"`
	// PromptShield runs Prompt Shields: a user prompt attack in the user's
	// text, or a document attack in tool results and system text, blocks.
	PromptShield bool `yaml:"promptShield" json:"promptShield"`
}

// Categories are the text analysis harm categories of Content Safety.
var Categories = []string{"Hate", "SelfHarm", "Sexual", "Violence"}

// Applies reports whether the rule covers a request of team for model.
func (r SafetyRule) Applies(team, model string) bool {
	return (len(r.Teams) == 0 || slices.Contains(r.Teams, team)) &&
		(len(r.Models) == 0 || slices.Contains(r.Models, model))
}

// Rule returns the first rule for team and model, or false.
func (s SafetyConfig) Rule(team, model string) (SafetyRule, bool) {
	for _, r := range s.Rules {
		if r.Applies(team, model) {
			return r, true
		}
	}
	return SafetyRule{}, false
}

func (s *SafetyConfig) applyDefaults() {
	if s.KeySetting == "" {
		s.KeySetting = "GatewayContentSafetyKey"
	}
	if s.ClientIDSetting == "" {
		s.ClientIDSetting = "GatewayContentSafetyClientId"
	}
	if s.Timeout == 0 {
		s.Timeout = Duration(2e9)
	}
	if s.FailMode == "" {
		s.FailMode = FailClosed
	}
}

func (s *SafetyConfig) resolve(getenv func(string) string) {
	s.Key = Secret(getenv(s.KeySetting))
	s.ClientID = getenv(s.ClientIDSetting)
}

func (s *SafetyConfig) validate(models map[string]Model) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch s.FailMode {
	case FailClosed, FailOpen:
	default:
		bad("contentSafety.failMode %q: want closed or open", s.FailMode)
	}
	if s.Timeout <= 0 {
		bad("contentSafety.timeout must be positive")
	}
	if len(s.Rules) > 0 {
		if u, err := url.Parse(s.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("contentSafety.endpoint %q: want https://<name>.cognitiveservices.azure.com", s.Endpoint)
		}
	}
	for i, r := range s.Rules {
		if len(r.Thresholds) == 0 && !r.PromptShield {
			bad("contentSafety.rules[%d]: set thresholds, promptShield or both", i)
		}
		for cat, sev := range r.Thresholds {
			if !slices.Contains(Categories, cat) {
				bad("contentSafety.rules[%d].thresholds: category %q: want one of %v", i, cat, Categories)
			}
			if sev < 0 || sev > 7 {
				bad("contentSafety.rules[%d].thresholds.%s %d: want a severity from 0 to 7", i, cat, sev)
			}
		}
		for _, m := range r.Models {
			if _, ok := models[m]; !ok {
				bad("contentSafety.rules[%d]: model %q is not in models", i, m)
			}
		}
	}
	return errs
}

// AuditConfig keeps an audit trail of prompts and completions for the
// teams and models that opt in (issue #19). Records go to the blob store
// (blob.kind) as append blobs, one per day and team.
type AuditConfig struct {
	// Teams whose requests are recorded; "*" = every team.
	Teams []string `yaml:"teams" json:"teams"`
	// Models (aliases) whose requests are recorded, whatever the team.
	Models []string `yaml:"models" json:"models"`
	// Container of the audit blobs. Default audit.
	Container string `yaml:"container" json:"container"`
	// FlushInterval between appends to the blob store: the most a hard
	// kill can lose. Default 1s.
	FlushInterval Duration `yaml:"flushInterval" json:"flushInterval"`
	// MaxBuffered records may wait in memory for a failing blob store
	// before they are spooled. Default 2000.
	MaxBuffered int `yaml:"maxBuffered" json:"maxBuffered"`
	// SpoolAfter is the longest records wait in memory for a failing blob
	// store before they are spooled. Default 5s.
	SpoolAfter Duration `yaml:"spoolAfter" json:"spoolAfter"`
	// SpoolPath is the local file that keeps records while the blob store
	// is down; it is replayed when it is back. Default ./data/audit-spool.jsonl.
	SpoolPath string `yaml:"spoolPath" json:"spoolPath"`
	// RedactPII replaces e-mail addresses, phone numbers and card numbers
	// in recorded bodies before they are written. Default false.
	RedactPII bool `yaml:"redactPII" json:"redactPII"`
	// Redact are more regular expressions (RE2) whose matches are replaced
	// by [REDACTED] before writing.
	Redact []string `yaml:"redact" json:"redact"`
}

// Enabled reports whether anything is audited.
func (a AuditConfig) Enabled() bool { return len(a.Teams) > 0 || len(a.Models) > 0 }

// Audits reports whether a request of team for model is recorded.
func (a AuditConfig) Audits(team, model string) bool {
	return slices.Contains(a.Teams, "*") || slices.Contains(a.Teams, team) || slices.Contains(a.Models, model)
}

func (a *AuditConfig) applyDefaults() {
	if a.Container == "" {
		a.Container = "audit"
	}
	if a.FlushInterval == 0 {
		a.FlushInterval = Duration(1e9)
	}
	if a.MaxBuffered == 0 {
		a.MaxBuffered = 2000
	}
	if a.SpoolAfter == 0 {
		a.SpoolAfter = Duration(5e9)
	}
	if a.SpoolPath == "" {
		a.SpoolPath = "./data/audit-spool.jsonl"
	}
}

func (a *AuditConfig) validate(models map[string]Model) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if a.FlushInterval < 0 || a.SpoolAfter < 0 {
		bad("audit: flushInterval and spoolAfter must not be negative")
	}
	if a.MaxBuffered < 10 {
		bad("audit.maxBuffered %d: must be at least 10", a.MaxBuffered)
	}
	for _, re := range a.Redact {
		if _, err := regexp.Compile(re); err != nil {
			bad("audit.redact %q: %v", re, err)
		}
	}
	for _, m := range a.Models {
		if _, ok := models[m]; !ok {
			bad("audit.models: %q is not in models", m)
		}
	}
	return errs
}
