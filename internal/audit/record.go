package audit

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"
)

// Record is one audited request. Request and Response hold the bodies as
// text when they are UTF-8, otherwise RequestBase64 / ResponseBase64 hold
// them (audio), so every byte is kept.
type Record struct {
	Time       time.Time `json:"time"`
	RequestID  string    `json:"request_id"`
	KeyID      string    `json:"key_id"`
	Team       string    `json:"team"`
	App        string    `json:"app"`
	Model      string    `json:"model"`
	Op         string    `json:"op"`
	Backend    string    `json:"backend,omitempty"`
	Deployment string    `json:"deployment,omitempty"`
	Region     string    `json:"region,omitempty"`
	Stream     bool      `json:"stream"`
	Status     int       `json:"status"`
	// Cache is "exact" or "semantic" when the gateway's response cache
	// answered the call (no backend saw it; Response is what it served).
	Cache string `json:"cache,omitempty"`
	// Usage is what the backend reported (nil when it reported none).
	Usage *Usage `json:"usage,omitempty"`

	Request        string `json:"request,omitempty"`
	RequestBase64  string `json:"request_base64,omitempty"`
	Response       string `json:"response,omitempty"`
	ResponseBase64 string `json:"response_base64,omitempty"`
	// ResponseTruncated is true when the response was longer than the
	// capture limit: the rest was sent to the client, not recorded.
	ResponseTruncated bool `json:"response_truncated,omitempty"`
	// Redacted counts the matches the redaction rules replaced.
	Redacted int `json:"redacted,omitempty"`
}

// Usage is the token usage of a call.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// SetBodies stores the request and response bodies, as text or base64.
func (r *Record) SetBodies(req, resp []byte) {
	r.Request, r.RequestBase64 = text(req)
	r.Response, r.ResponseBase64 = text(resp)
}

// Bodies returns the bodies SetBodies stored.
func (r *Record) Bodies() (req, resp []byte) {
	return bytesOf(r.Request, r.RequestBase64), bytesOf(r.Response, r.ResponseBase64)
}

func text(b []byte) (s, b64 string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return "", base64.StdEncoding.EncodeToString(b)
}

func bytesOf(s, b64 string) []byte {
	if b64 != "" {
		b, _ := base64.StdEncoding.DecodeString(b64)
		return b
	}
	return []byte(s)
}

// line is the record as one JSON line.
func (r *Record) line() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Day is the UTC day of t as the blob prefix uses it: yyyy/mm/dd.
func Day(t time.Time) string { return t.UTC().Format("2006/01/02") }

// TeamSegment is team as a blob name segment: the name itself when it is
// letters, digits, '-', '_' and '.' (not starting with '.' or "x-"), else
// "x-" and its hex.
func TeamSegment(team string) string {
	ok := team != "" && len(team) <= 64 && !strings.HasPrefix(team, ".") && !strings.HasPrefix(team, "x-")
	for _, r := range team {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			ok = false
		}
	}
	if ok {
		return team
	}
	return "x-" + hex.EncodeToString([]byte(team))
}

// IDTime reads the millisecond timestamp at the start of a gateway request
// id (32 hex characters, UUIDv7 layout).
func IDTime(id string) (time.Time, bool) {
	if len(id) != 32 {
		return time.Time{}, false
	}
	b, err := hex.DecodeString(id[:12])
	if err != nil {
		return time.Time{}, false
	}
	var ms int64
	for _, c := range b {
		ms = ms<<8 | int64(c)
	}
	return time.UnixMilli(ms).UTC(), true
}
