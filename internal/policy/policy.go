package policy

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/openai"
)

// Class is a caller's priority class.
type Class string

// Priority classes.
const (
	// ClassInteractive callers make synchronous calls and may also queue
	// low-priority jobs (Prefer: respond-async). The default.
	ClassInteractive Class = "interactive"
	// ClassBatch callers may only queue low-priority jobs: their calls run
	// when the pools have spare capacity, never in front of interactive
	// traffic.
	ClassBatch Class = "batch"
)

// OverCap is what happens to a request asking for more output tokens than
// the caller's cap.
type OverCap string

// OverCap modes.
const (
	// Clamp lowers the request's limit to the cap (the default).
	Clamp OverCap = "clamp"
	// Reject refuses the request with 400.
	Reject OverCap = "reject"
)

// Scope is what a caller (an API key or a mapped identity) may do. The zero
// value allows every model, region and class, caps nothing and grants no
// admin rights.
type Scope struct {
	// Models are the model aliases the caller may call; empty = every alias.
	Models []string `yaml:"models" json:"models,omitempty"`
	// Regions are the backend regions the caller may be served from (data
	// residency); empty = any region.
	Regions []string `yaml:"regions" json:"regions,omitempty"`
	// Class is interactive (default) or batch (only Prefer: respond-async).
	Class Class `yaml:"class" json:"class,omitempty"`
	// MaxOutputTokens caps max_tokens / max_completion_tokens /
	// max_output_tokens; a request without one gets the cap set. 0 = none.
	MaxOutputTokens int64 `yaml:"maxOutputTokens" json:"max_output_tokens,omitempty"`
	// OverCap is clamp (default) or reject for requests above MaxOutputTokens.
	OverCap OverCap `yaml:"overCap" json:"over_cap,omitempty"`
	// MaxN caps n (choices) and best_of; requests above it get 400. 0 = none.
	MaxN int64 `yaml:"maxN" json:"max_n,omitempty"`
	// Admin lets the caller use the admin API (/admin/..., /gateway/admin/...).
	Admin bool `yaml:"admin" json:"admin,omitempty"`
	// UsageRead (usage:read) is the finance scope: the caller may read
	// every team's usage (GET /admin/usage and its page) and nothing else:
	// no inference, no jobs, no other admin route.
	UsageRead bool `yaml:"usageRead" json:"usage_read,omitempty"`
	// AuditRead (audit:read) is the compliance scope: the caller may read
	// audit records (GET /admin/audit/{request_id}) and nothing else.
	AuditRead bool `yaml:"auditRead" json:"audit_read,omitempty"`
}

// Caps are per-request limits a model alias sets for every caller
// (models.<alias>.policy); a caller's scope can only tighten them.
type Caps struct {
	// MaxOutputTokens caps the output-token fields (0 = none).
	MaxOutputTokens int64 `yaml:"maxOutputTokens" json:"maxOutputTokens"`
	// OverCap is clamp (default) or reject above MaxOutputTokens.
	OverCap OverCap `yaml:"overCap" json:"overCap"`
	// MaxN caps n and best_of (0 = none).
	MaxN int64 `yaml:"maxN" json:"maxN"`
}

// Validate checks the caps.
func (c Caps) Validate() error {
	return Scope{MaxOutputTokens: c.MaxOutputTokens, OverCap: c.OverCap, MaxN: c.MaxN}.Validate()
}

// WithCaps returns the scope with a model's caps applied: the lower of
// each pair of caps wins, and the output-token cap that binds brings its
// overCap (reject when both are equal and either rejects).
func (s Scope) WithCaps(c Caps) Scope {
	if c.MaxN > 0 && (s.MaxN == 0 || c.MaxN < s.MaxN) {
		s.MaxN = c.MaxN
	}
	switch {
	case c.MaxOutputTokens == 0:
	case s.MaxOutputTokens == 0 || c.MaxOutputTokens < s.MaxOutputTokens:
		s.MaxOutputTokens, s.OverCap = c.MaxOutputTokens, c.OverCap
	case c.MaxOutputTokens == s.MaxOutputTokens && c.OverCap == Reject:
		s.OverCap = Reject
	}
	return s
}

// ErrInvalid is wrapped by Validate's errors.
var ErrInvalid = errors.New("invalid scope")

// Validate checks the scope's fields.
func (s Scope) Validate() error {
	for _, m := range s.Models {
		if m == "" || len(m) > 128 || strings.ContainsAny(m, ", \t\r\n") {
			return fmt.Errorf("%w: model alias %q", ErrInvalid, m)
		}
	}
	for _, r := range s.Regions {
		if !ValidName(r) {
			return fmt.Errorf("%w: region %q must be 1-64 characters of letters, digits, '-', '_' or '.'", ErrInvalid, r)
		}
	}
	switch s.Class {
	case "", ClassInteractive, ClassBatch:
	default:
		return fmt.Errorf("%w: class %q must be interactive or batch", ErrInvalid, s.Class)
	}
	switch s.OverCap {
	case "", Clamp, Reject:
	default:
		return fmt.Errorf("%w: overCap %q must be clamp or reject", ErrInvalid, s.OverCap)
	}
	if s.MaxOutputTokens < 0 {
		return fmt.Errorf("%w: maxOutputTokens must not be negative", ErrInvalid)
	}
	if s.MaxN < 0 {
		return fmt.Errorf("%w: maxN must not be negative", ErrInvalid)
	}
	if s.OverCap != "" && s.MaxOutputTokens == 0 {
		return fmt.Errorf("%w: overCap needs maxOutputTokens", ErrInvalid)
	}
	if s.UsageRead && (s.Admin || len(s.Models) > 0 || len(s.Regions) > 0 || s.Class != "" || s.MaxOutputTokens != 0 || s.MaxN != 0) {
		return fmt.Errorf("%w: usage:read is a read-only scope; it takes no other field", ErrInvalid)
	}
	if s.AuditRead && (s.Admin || s.UsageRead || len(s.Models) > 0 || len(s.Regions) > 0 || s.Class != "" || s.MaxOutputTokens != 0 || s.MaxN != 0) {
		return fmt.Errorf("%w: audit:read is a read-only scope; it takes no other field", ErrInvalid)
	}
	return nil
}

// ClassOrDefault returns the class, interactive when unset.
func (s Scope) ClassOrDefault() Class {
	if s.Class == "" {
		return ClassInteractive
	}
	return s.Class
}

// AllowsModel reports whether the caller may call alias.
func (s Scope) AllowsModel(alias string) bool {
	return len(s.Models) == 0 || slices.Contains(s.Models, alias)
}

// CheckModel refuses a model alias outside the scope: 403 model_not_allowed.
func (s Scope) CheckModel(alias string) error {
	if s.AllowsModel(alias) {
		return nil
	}
	return &httperr.Error{Status: http.StatusForbidden, Code: "model_not_allowed", Param: "model",
		Msg: "This credential may not use the model " + strconv.Quote(alias) + "; it may use: " + strings.Join(s.Models, ", ") + "."}
}

// Admit checks a request against the scope before it is routed: the
// model (403), the priority class (403) and the per-request caps (400).
// It returns the body to send, with max output tokens clamped or set to
// the cap, and updates req to match; clamped names the field lowered
// ("" when nothing was changed). body is never modified in place.
func (s Scope) Admit(req *openai.Request, async bool, body []byte) (out []byte, clamped string, err error) {
	if err := s.CheckModel(req.Model); err != nil {
		return nil, "", err
	}
	if s.Class == ClassBatch && !async {
		return nil, "", httperr.Forbidden("priority_class_forbidden",
			"This credential has the batch priority class: send the request with the header Prefer: respond-async and poll the job.")
	}
	if s.MaxN > 0 {
		root := gjson.ParseBytes(body)
		for _, p := range []string{"n", "best_of"} {
			if v := root.Get(p); v.Type == gjson.Number && v.Int() > s.MaxN {
				return nil, "", &httperr.Error{Status: http.StatusBadRequest, Code: "parameter_above_limit", Param: p,
					Msg: fmt.Sprintf("%s is %d; this credential may ask for at most %d.", p, v.Int(), s.MaxN)}
			}
		}
	}
	if s.MaxOutputTokens == 0 || req.Op == openai.OpEmbeddings || req.Op.Media() {
		return body, "", nil
	}
	return s.capOutput(req, body)
}

// capOutput clamps (or refuses) every output-token field above the cap,
// and sets the cap when the request has none.
func (s Scope) capOutput(req *openai.Request, body []byte) ([]byte, string, error) {
	root := gjson.ParseBytes(body)
	present := 0
	out := body
	var lowered []string
	for _, f := range outputFields(req.Op) {
		v := root.Get(f)
		if !v.Exists() || v.Type == gjson.Null {
			continue
		}
		present++
		if v.Type != gjson.Number || v.Int() <= s.MaxOutputTokens {
			continue // non-numbers are the backend's to refuse
		}
		if s.OverCap == Reject {
			return nil, "", &httperr.Error{Status: http.StatusBadRequest, Code: "parameter_above_limit", Param: f,
				Msg: fmt.Sprintf("%s is %d; this credential may ask for at most %d output tokens.", f, v.Int(), s.MaxOutputTokens)}
		}
		var err error
		if out, err = sjson.SetBytes(out, f, s.MaxOutputTokens); err != nil {
			return nil, "", httperr.Wrap(err, http.StatusBadRequest, "invalid_request_error", "The request body could not be rewritten.")
		}
		lowered = append(lowered, f)
	}
	if present == 0 {
		var err error
		f := defaultOutputField(*req)
		if out, err = sjson.SetBytes(body, f, s.MaxOutputTokens); err != nil {
			return nil, "", httperr.Wrap(err, http.StatusBadRequest, "invalid_request_error", "The request body could not be rewritten.")
		}
		lowered = append(lowered, f)
	}
	if req.MaxOutput == 0 || req.MaxOutput > s.MaxOutputTokens {
		req.MaxOutput = s.MaxOutputTokens
	}
	return out, strings.Join(lowered, ","), nil
}

// outputFields are the body fields that limit output tokens per operation.
func outputFields(op openai.Op) []string {
	switch op {
	case openai.OpResponses:
		return []string{"max_output_tokens"}
	case openai.OpCompletions:
		return []string{"max_tokens"}
	default:
		return []string{"max_completion_tokens", "max_tokens"}
	}
}

// defaultOutputField is the field set when a capped request has none:
// max_completion_tokens for chat where the api-version knows it (v1 and
// dated versions from 2024-09-01; o-series models refuse max_tokens), else
// max_tokens.
func defaultOutputField(req openai.Request) string {
	switch req.Op {
	case openai.OpResponses:
		return "max_output_tokens"
	case openai.OpChat:
		if openai.CanIncludeUsage(req.APIVersion) {
			return "max_completion_tokens"
		}
	}
	return "max_tokens"
}

// ValidName reports whether s is 1-64 letters, digits, '-', '_' or '.':
// the names of teams, apps and regions.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
