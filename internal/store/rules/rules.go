package rules

import (
	"encoding/base64"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/foundry-gateway/gateway/internal/store"
)

// Limits of single property values (Azure: "String ... up to 64 KiB",
// "Byte[] ... up to 64 KiB"; strings are counted in UTF-16).
const (
	MaxStringBytes = 64 << 10 // UTF-16 bytes, so 32 Ki code units
	MaxBinaryBytes = 64 << 10
)

// minTime and maxTime bound Edm.DateTime values (Azure rejects times before
// 1601 and after 9999).
var (
	minTime = time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC)
)

// TimePrecision is what Props times are truncated to before they are stored,
// by every implementation, so a round trip gives the same value everywhere.
const TimePrecision = time.Millisecond

// Time is the form in which t is stored: UTC, truncated to TimePrecision.
func Time(t time.Time) time.Time {
	return t.UTC().Truncate(TimePrecision)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", store.ErrInvalid, fmt.Sprintf(format, args...))
}

// Table checks a table name and returns its canonical (lower-case) form.
// Azure table names are 3-63 ASCII letters and digits starting with a letter,
// compared case-insensitively, and "tables" is reserved. Azurite compares
// them case-sensitively, so implementations use the canonical form only.
func Table(name string) (string, error) {
	if len(name) < 3 || len(name) > 63 {
		return "", invalid("table name %q must be 3-63 characters", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		isLetter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		isDigit := c >= '0' && c <= '9'
		if i == 0 && !isLetter {
			return "", invalid("table name %q must start with a letter", name)
		}
		if !isLetter && !isDigit {
			return "", invalid("table name %q must be letters and digits only", name)
		}
	}
	canon := strings.ToLower(name)
	if canon == "tables" {
		return "", invalid("table name %q is reserved", name)
	}
	return canon, nil
}

// Key checks a PartitionKey or RowKey: non-empty valid UTF-8 of at most
// store.MaxKeyLen bytes in UTF-16 (1 KiB, so 512 ASCII characters: Azure
// stores strings as UTF-16 and Azurite refuses keys over 512 UTF-16 code
// units) without '/', '\', '#', '?' or control characters (U+0000-U+001F,
// U+007F-U+009F). Azure allows empty keys but aztables v1.4.1 cannot address
// an empty PartitionKey, so they are refused here.
func Key(k string) error {
	if k == "" {
		return invalid("empty key")
	}
	if asciiKeyOK(k) {
		return nil
	}
	if !utf8.ValidString(k) {
		return invalid("key %.64q is not valid UTF-8", k)
	}
	if n := 2 * utf16Len(k); n > store.MaxKeyLen {
		return invalid("key of %d UTF-16 bytes is longer than %d", n, store.MaxKeyLen)
	}
	for _, r := range k {
		switch {
		case r == '/' || r == '\\' || r == '#' || r == '?':
			return invalid("key %.64q contains %q", k, r)
		case r <= 0x1f || r >= 0x7f && r <= 0x9f:
			return invalid("key %.64q contains control character %U", k, r)
		}
	}
	return nil
}

// asciiKeyOK is Key's fast path (issue 17: the ledger checks two keys per
// row): an ASCII key short enough, with no byte Key refuses. Anything else
// takes the full check.
func asciiKeyOK(k string) bool {
	if 2*len(k) > store.MaxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case c >= 0x7f || c <= 0x1f || c == '/' || c == '\\' || c == '#' || c == '?':
			return false
		}
	}
	return true
}

// Keys checks both keys of a row.
func Keys(pk, rk string) error {
	if err := Key(pk); err != nil {
		return fmt.Errorf("PartitionKey: %w", err)
	}
	if err := Key(rk); err != nil {
		return fmt.Errorf("RowKey: %w", err)
	}
	return nil
}

// ETag checks the ifMatch argument of Update and Delete: an ETag or "*".
func ETag(ifMatch string) error {
	if ifMatch == "" {
		return invalid(`empty ifMatch: pass an ETag or "*"`)
	}
	return nil
}

// PropName checks a property name: 1-255 characters forming a C# identifier
// (a letter or '_', then letters, digits or '_'), and none of the system
// names PartitionKey, RowKey, Timestamp.
func PropName(name string) error {
	if name == "" {
		return invalid("empty property name")
	}
	if utf8.RuneCountInString(name) > store.MaxPropNameLen {
		return invalid("property name %.40q... is longer than %d", name, store.MaxPropNameLen)
	}
	switch name {
	case "PartitionKey", "RowKey", "Timestamp":
		return invalid("property name %q is reserved", name)
	}
	if asciiIdent(name) {
		return nil
	}
	for i, r := range name {
		ok := r == '_' || unicode.IsLetter(r) || i > 0 && unicode.IsDigit(r)
		if !ok {
			return invalid("property name %q is not an identifier", name)
		}
	}
	return nil
}

// asciiIdent reports an ASCII identifier: a letter or '_', then letters,
// digits or '_' (PropName's fast path; other names take the full check).
func asciiIdent(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// utf16Len is the number of UTF-16 code units of s, which is how Azure sizes
// strings.
func utf16Len(s string) int {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++ // ASCII: one code unit a byte
	}
	if i == len(s) {
		return i
	}
	n := i
	for _, r := range s[i:] {
		n += utf16.RuneLen(r)
	}
	return n
}

// Value checks one property value and returns its size as Azure counts it.
func Value(name string, v any) (int, error) {
	switch v := v.(type) {
	case string:
		if !utf8.ValidString(v) {
			return 0, invalid("property %s: string is not valid UTF-8", name)
		}
		n := 2 * utf16Len(v)
		if n > MaxStringBytes {
			return 0, invalid("property %s: string of %d UTF-16 bytes is over %d", name, n, MaxStringBytes)
		}
		return 4 + n, nil
	case int64:
		return 8, nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, invalid("property %s: %v is not a finite number", name, v)
		}
		return 8, nil
	case bool:
		return 1, nil
	case time.Time:
		u := v.UTC()
		if u.Before(minTime) || u.After(maxTime) {
			return 0, invalid("property %s: time %v is outside %d-%d", name, v, minTime.Year(), maxTime.Year())
		}
		return 8, nil
	case []byte:
		if len(v) > MaxBinaryBytes {
			return 0, invalid("property %s: %d bytes is over %d", name, len(v), MaxBinaryBytes)
		}
		return 4 + len(v), nil
	default:
		return 0, invalid("property %s: unsupported type %T", name, v)
	}
}

// Entity checks a whole entity for a write and returns its size as Azure
// counts it (4 + 2*len(keys) + per property 8 + 2*len(name) + value). Its
// JSON body must also fit store.MaxEntityBytes, which is how Azurite counts.
func Entity(e store.Entity) (int, error) {
	size, _, err := entity(e)
	return size, err
}

// entity is Entity that also returns the JSON body size (bodySize), so a
// batch check computes it once per entity.
func entity(e store.Entity) (size, body int, err error) {
	if err := Keys(e.PartitionKey, e.RowKey); err != nil {
		return 0, 0, err
	}
	if len(e.Props) > store.MaxCustomProps {
		return 0, 0, invalid("%d properties is more than %d", len(e.Props), store.MaxCustomProps)
	}
	size = 4 + 2*(utf16Len(e.PartitionKey)+utf16Len(e.RowKey))
	for name, v := range e.Props {
		if err := PropName(name); err != nil {
			return 0, 0, err
		}
		n, err := Value(name, v)
		if err != nil {
			return 0, 0, err
		}
		size += 8 + 2*utf16Len(name) + n
	}
	if size > store.MaxEntityBytes {
		return 0, 0, invalid("entity of %d bytes is over %d", size, store.MaxEntityBytes)
	}
	// Azurite measures the JSON body instead (base64 makes binary 4/3 larger);
	// the entity must fit both ways.
	if body = bodySize(e); body > store.MaxEntityBytes {
		return 0, 0, invalid("entity of about %d JSON bytes is over %d", body, store.MaxEntityBytes)
	}
	return size, body, nil
}

// Query checks the shape of a query.
func Query(q store.Query) error {
	switch {
	case q.AllPartitions && q.PartitionKey != "":
		return invalid("query sets both PartitionKey and AllPartitions")
	case !q.AllPartitions && q.PartitionKey == "":
		return invalid("query needs a PartitionKey or AllPartitions")
	case q.Limit < 0:
		return invalid("negative query limit %d", q.Limit)
	case !utf8.ValidString(q.RowKeyFrom) || !utf8.ValidString(q.RowKeyTo):
		return invalid("query RowKey bound is not valid UTF-8")
	}
	if q.PartitionKey != "" {
		return Key(q.PartitionKey)
	}
	return nil
}

// Per-operation allowance in the batch size estimate for the multipart
// boundary, the sub-request line with the table URL, and its headers. A real
// sub-request header block is about 350 bytes; the rest is room for long
// account host names.
const batchOpOverhead = 1024

// Batch checks a batch: at most store.MaxBatchOps ops, one PartitionKey, each
// row once, every entity valid, and an estimated request body under
// store.MaxBatchBytes. The estimate is an upper bound of what aztables sends
// (JSON body with type annotations plus percent-encoded keys in the URL), so a
// batch that passes here is not refused by Azure for its size.
func Batch(ops []store.Op) error {
	if len(ops) > store.MaxBatchOps {
		return invalid("batch of %d operations is over %d", len(ops), store.MaxBatchOps)
	}
	if len(ops) == 0 {
		return nil
	}
	pk := ops[0].Entity.PartitionKey
	seen := make(map[string]bool, len(ops))
	total := 1024 // outer multipart envelope
	for i, op := range ops {
		e := op.Entity
		body := 0
		if e.PartitionKey != pk {
			return invalid("batch op %d: PartitionKey %q differs from %q (a batch is one partition)", i, e.PartitionKey, pk)
		}
		switch op.Kind {
		case store.OpDelete:
			if err := Keys(e.PartitionKey, e.RowKey); err != nil {
				return fmt.Errorf("batch op %d: %w", i, err)
			}
		case store.OpInsert, store.OpUpsert, store.OpMerge:
			var err error
			if _, body, err = entity(e); err != nil {
				return fmt.Errorf("batch op %d: %w", i, err)
			}
		default:
			return invalid("batch op %d: unknown kind %d", i, op.Kind)
		}
		if seen[e.RowKey] {
			return invalid("batch op %d: row %q appears twice", i, e.RowKey)
		}
		seen[e.RowKey] = true
		total += batchOpOverhead + WireSize(e, false) + body // body: 0 for deletes
	}
	if total >= store.MaxBatchBytes {
		return invalid("batch of about %d bytes is not under %d", total, store.MaxBatchBytes)
	}
	return nil
}

// WireSize is an upper bound of the bytes an entity takes in a request: the
// keys percent-encoded in the URL (with quotes doubled) plus, when withBody,
// the JSON body with "@odata.type" annotations.
func WireSize(e store.Entity, withBody bool) int {
	n := urlKeyLen(e.PartitionKey) + urlKeyLen(e.RowKey)
	if withBody {
		n += bodySize(e)
	}
	return n
}

// bodySize is an upper bound of the JSON body aztables sends for e.
func bodySize(e store.Entity) int {
	n := 2 + len(`"PartitionKey":,"RowKey":,`) + jsonLen(e.PartitionKey) + jsonLen(e.RowKey)
	for name, v := range e.Props {
		// "name":value,"name@odata.type":"Edm.DateTime",
		n += 2*jsonLen(name) + len(`:,@odata.type:"Edm.DateTime",`)
		switch v := v.(type) {
		case string:
			n += jsonLen(v)
		case []byte:
			n += base64.StdEncoding.EncodedLen(len(v)) + 2
		default:
			n += 34 // the longest int64, float64 or time text, quoted
		}
	}
	return n
}

// urlKeyLen is len(urlKey(k)), without building it: url.PathEscape
// leaves letters, digits and - _ . ~ $ & + : = @ as they are and writes
// every other byte as %XX; a quote is doubled first.
func urlKeyLen(k string) int {
	n := 0
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9':
			n++
		case c == '-' || c == '_' || c == '.' || c == '~' || c == '$' || c == '&' || c == '+' || c == ':' || c == '=' || c == '@':
			n++
		case c == '\'':
			n += 6
		default:
			n += 3
		}
	}
	return n
}

// jsonLen is an upper bound of the length of s as a JSON string on the
// wire: encoding/json escapes quotes, backslashes, control characters and
// <, >, &, and store/tables sends every non-ASCII character as \uXXXX (two
// of them above U+FFFF).
func jsonLen(s string) int {
	n := 2
	i := 0
	for ; i < len(s) && s[i] < utf8.RuneSelf; i++ { // ASCII, byte by byte
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			n += 2
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			n += 6
		default:
			n++
		}
	}
	for _, r := range s[i:] {
		switch {
		case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t':
			n += 2
		case r < 0x20 || r == '<' || r == '>' || r == '&':
			n += 6
		case r < utf8.RuneSelf:
			n++
		case r > 0xffff:
			n += 12
		default:
			n += 6
		}
	}
	return n
}
