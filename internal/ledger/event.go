package ledger

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/store"
)

// Table names (before the store's TablePrefix).
const (
	EventsTable = "UsageEvents"
	DailyTable  = "UsageDaily"
	IndexTable  = "UsageIndex"
	DirtyTable  = "UsageDirty"
)

// Class is the service class of a call.
type Class string

// Classes.
const (
	ClassInteractive Class = "interactive"
	ClassBatch       Class = "batch"
)

// Source says where an event's token counts come from.
type Source string

// Sources.
const (
	// SourceReported: the backend reported the usage.
	SourceReported Source = "reported"
	// SourceEstimated: the backend reported none (a stream cut before its
	// usage chunk); the gateway counted the prompt and the streamed text.
	SourceEstimated Source = "estimated"
	// SourceNone: the call failed before any output and the backend reported
	// no usage (a 429, a 5xx, a connection error); the tokens are zero.
	SourceNone Source = "none"
	// SourceCache: the gateway's response cache answered (issue #20); the
	// token columns are zero (no backend was called) and SavedTokens holds
	// what the original call used.
	SourceCache Source = "cache"
)

// Event is one UsageEvents row: one completed call.
type Event struct {
	Time       time.Time `json:"time"`
	RequestID  string    `json:"requestId"`
	KeyID      string    `json:"keyId"`
	Team       string    `json:"team"`
	App        string    `json:"app"`
	Model      string    `json:"model"`
	Operation  string    `json:"operation"`
	Backend    string    `json:"backend"`
	Deployment string    `json:"deployment"`
	Region     string    `json:"region"`
	Class      Class     `json:"class"`
	Status     int       `json:"status"`
	Stream     bool      `json:"stream"`
	LatencyMs  int64     `json:"latencyMs"`

	PromptTokens     int64 `json:"promptTokens"`
	CachedTokens     int64 `json:"cachedTokens"`
	CompletionTokens int64 `json:"completionTokens"`
	ReasoningTokens  int64 `json:"reasoningTokens"`
	TotalTokens      int64 `json:"totalTokens"`

	Cost        money.Nanos `json:"cost"`
	Currency    string      `json:"currency"`
	UsageSource Source      `json:"usageSource"`

	// Cache is exact or semantic when the response cache answered ("" for
	// backend calls); SavedTokens and SavedCost are the tokens and the
	// cost the hit did not spend (the original call's, less what the hit
	// is charged: cache.costFraction).
	Cache       string      `json:"cache,omitempty"`
	SavedTokens int64       `json:"savedTokens,omitempty"`
	SavedCost   money.Nanos `json:"savedCost,omitempty"`
}

// Day is the UTC date of t as yyyy-mm-dd.
func Day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// PartitionKey is the event's UsageEvents partition: "yyyy-mm-dd|team".
func (e Event) PartitionKey() string { return Day(e.Time) + "|" + EncodeKey(e.Team) }

// RowKey is the event's UsageEvents row: the request id.
func (e Event) RowKey() string { return EncodeKey(e.RequestID) }

// EncodeKey makes s safe as (part of) a Table Storage key: the characters
// Azure refuses in keys (/ \ # ? and control characters), the separator |
// and % itself are written as %XX. Ordinary team, app and model names are
// unchanged. The columns keep the original text.
func EncodeKey(s string) string {
	if keySafe(s) {
		return s // the usual case: no copy (issue 17: the ledger writer encodes several keys per event)
	}
	return encodeKey(s)
}

// encodeKey is EncodeKey's escaping.
func encodeKey(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '/' || c == '\\' || c == '#' || c == '?' || c == '|' || c == '%' || c == '\'' || c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	// U+0080–U+009F are control characters too; percent-encode their UTF-8.
	out := b.String()
	if strings.ContainsFunc(out, func(r rune) bool { return r >= 0x80 && r <= 0x9f }) {
		var o strings.Builder
		for _, r := range out {
			if r >= 0x80 && r <= 0x9f {
				for _, c := range []byte(string(r)) {
					fmt.Fprintf(&o, "%%%02X", c)
				}
				continue
			}
			o.WriteRune(r)
		}
		out = o.String()
	}
	return out
}

// keySafe reports whether EncodeKey leaves s as it is: no byte it escapes,
// and no U+0080–U+009F (UTF-8 0xC2 0x80–0x9F).
func keySafe(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '/' || c == '\\' || c == '#' || c == '?' || c == '|' || c == '%' || c == '\'' || c < 0x20 || c == 0x7f:
			return false
		case c == 0xC2 && i+1 < len(s) && s[i+1] >= 0x80 && s[i+1] <= 0x9f:
			return false
		}
	}
	return true
}

// entity is the UsageEvents row of e.
func (e Event) entity() store.Entity { return e.entityIn(e.PartitionKey(), nil) }

// entityIn is the UsageEvents row of e in partition pk (e.PartitionKey(),
// which the writer has at hand already). The repeated string columns
// (team, model, backend, ...) come boxed from bx when it is not nil: the
// writer boxes each distinct value once per flush instead of per row.
func (e Event) entityIn(pk string, bx boxes) store.Entity {
	return store.Entity{PartitionKey: pk, RowKey: e.RowKey(), Props: map[string]any{
		"Time": e.Time.UTC(), "RequestId": e.RequestID, "KeyId": bx.str(e.KeyID), "Team": bx.str(e.Team), "App": bx.str(e.App),
		"Model": bx.str(e.Model), "Operation": bx.str(e.Operation), "Backend": bx.str(e.Backend), "Deployment": bx.str(e.Deployment),
		"Region": bx.str(e.Region), "Class": bx.str(string(e.Class)), "Status": int64(e.Status), "Stream": e.Stream,
		"LatencyMs": e.LatencyMs, "PromptTokens": e.PromptTokens, "CachedTokens": e.CachedTokens,
		"CompletionTokens": e.CompletionTokens, "ReasoningTokens": e.ReasoningTokens,
		"TotalTokens": e.TotalTokens, "Cost": e.Cost.Float(), "CostNanos": int64(e.Cost), "Currency": bx.str(e.Currency),
		"UsageSource": bx.str(string(e.UsageSource)),
		"Cache":       bx.str(e.Cache), "SavedTokens": e.SavedTokens, "SavedCostNanos": int64(e.SavedCost),
	}}
}

// boxes holds strings already converted to interface values (which costs
// an allocation per conversion), for the columns that repeat from row to
// row. Interface values are immutable, so rows may share them.
type boxes map[string]any

// maxBoxes bounds a boxes' size: past it, strings are boxed as usual.
const maxBoxes = 4096

func (bx boxes) str(s string) any {
	if bx == nil {
		return s
	}
	if v, ok := bx[s]; ok {
		return v
	}
	v := any(s)
	if len(bx) < maxBoxes {
		bx[s] = v
	}
	return v
}

// eventFrom reads a UsageEvents row.
func eventFrom(en store.Entity) Event {
	p := props(en.Props)
	return Event{
		Time: p.time("Time"), RequestID: p.str("RequestId"), KeyID: p.str("KeyId"), Team: p.str("Team"),
		App: p.str("App"), Model: p.str("Model"), Operation: p.str("Operation"), Backend: p.str("Backend"),
		Deployment: p.str("Deployment"), Region: p.str("Region"), Class: Class(p.str("Class")),
		Status: int(p.i64("Status")), Stream: p.bool("Stream"), LatencyMs: p.i64("LatencyMs"),
		PromptTokens: p.i64("PromptTokens"), CachedTokens: p.i64("CachedTokens"),
		CompletionTokens: p.i64("CompletionTokens"), ReasoningTokens: p.i64("ReasoningTokens"),
		TotalTokens: p.i64("TotalTokens"), Cost: p.cost(), Currency: p.str("Currency"),
		UsageSource: Source(p.str("UsageSource")),
		Cache:       p.str("Cache"), SavedTokens: p.i64("SavedTokens"), SavedCost: money.Nanos(p.i64("SavedCostNanos")),
	}
}

type props map[string]any

func (p props) str(k string) string { s, _ := p[k].(string); return s }
func (p props) bool(k string) bool  { b, _ := p[k].(bool); return b }
func (p props) time(k string) time.Time {
	t, _ := p[k].(time.Time)
	return t
}
func (p props) i64(k string) int64 {
	switch v := p[k].(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	case float64:
		return int64(v)
	}
	return 0
}

// cost is the exact CostNanos column, or, on a row written before it
// existed, the Cost column (a float64) rounded to the nano.
func (p props) cost() money.Nanos {
	if _, ok := p["CostNanos"]; ok {
		return money.Nanos(p.i64("CostNanos"))
	}
	return money.FromFloat(p.f64("Cost"))
}

func (p props) f64(k string) float64 {
	switch v := p[k].(type) {
	case float64:
		return v
	case int64:
		return float64(v)
	}
	return 0
}

// Tables are the ledger's tables.
type Tables struct {
	Events, Daily, Index, Dirty store.Table
}

// OpenTables opens (creating when missing) the ledger's tables, with the
// store's table prefix.
func OpenTables(ctx context.Context, st store.Store, prefix string) (Tables, error) {
	var t Tables
	for _, x := range []struct {
		name string
		dst  *store.Table
	}{{EventsTable, &t.Events}, {DailyTable, &t.Daily}, {IndexTable, &t.Index}, {DirtyTable, &t.Dirty}} {
		tb, err := st.Table(ctx, prefix+x.name)
		if err != nil {
			return Tables{}, fmt.Errorf("ledger: open %s: %w", prefix+x.name, err)
		}
		*x.dst = tb
	}
	return t, nil
}
