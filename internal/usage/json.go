package usage

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// This file holds the JSON helpers. Usage objects are parsed with gjson
// (they are rare: one per call), but everything that runs on every streamed
// chunk — "could this hold usage?", pulling the generated text out of a
// delta — is hand-written byte scanning, because gjson unescapes every string
// value it returns and so allocates on content such as "\n".

// view returns b as a string without copying, so gjson can read an event
// in place. The string must not outlive the call that made it: gjson results
// are read (numbers, lengths) and dropped before b is written to again.
func view(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// parseUsage maps a usage object onto Usage. kind picks the field names:
// the Responses API says input/output where chat, completions and embeddings
// say prompt/completion. It reports false when r is not an object (absent
// or null), which is "not reported", not zero.
func parseUsage(r gjson.Result, kind Kind) (Usage, bool) {
	if !r.IsObject() {
		return Usage{}, false
	}
	in, out := "prompt_tokens", "completion_tokens"
	inDetails, outDetails := "prompt_tokens_details", "completion_tokens_details"
	if kind == KindResponses {
		in, out = "input_tokens", "output_tokens"
		inDetails, outDetails = "input_tokens_details", "output_tokens_details"
	}
	u := Usage{Reported: true}
	haveTotal := false
	r.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case in:
			u.PromptTokens = v.Int()
		case out:
			u.CompletionTokens = v.Int()
		case "total_tokens":
			u.TotalTokens = v.Int()
			haveTotal = v.Type == gjson.Number
		case inDetails:
			u.CachedTokens = v.Get("cached_tokens").Int()
		case outDetails:
			u.ReasoningTokens = v.Get("reasoning_tokens").Int()
		}
		return true
	})
	if !haveTotal {
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	return u, true
}

// usageFromObject parses raw, which must be exactly one JSON object. It is
// validated first because gjson is lenient and would happily read numbers
// out of a cut-off object.
func usageFromObject(raw []byte, kind Kind) (Usage, bool) {
	js := view(raw)
	if !gjson.Valid(js) {
		return Usage{}, false
	}
	return parseUsage(gjson.Parse(js), kind)
}

var (
	usageKey        = []byte(`"usage"`)
	usageNullSuffix = []byte(`"usage":null}`)
)

// hasUsageObject is the cheap filter run on every chat chunk: it reports
// whether b contains `"usage"` followed by ':' and '{', that is, a usage
// member whose value is an object. The same bytes inside a string value are
// escaped (`\"usage\"`) and do not match. A true result is confirmed by a
// real parse.
//
// Two shortcuts keep it cheap. Azure sends `"usage":null` as the last member
// of every chunk once include_usage is on, so that suffix answers at once
// (JSON's last duplicate key wins, as in encoding/json). Otherwise the search
// anchors on 'g': bytes.Index would anchor on '"', which in JSON matches
// every few bytes.
func hasUsageObject(b []byte) bool {
	t := len(b)
	for t > 0 && isWS(b[t-1]) {
		t--
	}
	if bytes.HasSuffix(b[:t], usageNullSuffix) {
		return false
	}
	for i := 0; ; {
		k := bytes.IndexByte(b[i:], 'g')
		if k < 0 {
			return false
		}
		g := i + k // the 'g' of "usage"
		i = g + 1
		if g < 4 || g+2 >= len(b) || b[g+1] != 'e' || b[g+2] != '"' || string(b[g-4:g]) != `"usa` {
			continue
		}
		j := skipWS(b, g+3)
		if j < len(b) && b[j] == ':' {
			if j = skipWS(b, j+1); j < len(b) && b[j] == '{' {
				return true
			}
		}
	}
}

// lastUsageObject finds, in b, the end of a JSON document whose beginning
// may be missing (a tail window), the last `"usage": {…}` member that sits
// depth objects below the document root: the bytes after the object must
// close exactly depth objects (skipping any further members) and then hold
// only whitespace. That check is what rejects a nested "usage" (it closes
// too many objects) and one inside a string (the rest does not parse).
// It returns the object's bytes.
func lastUsageObject(b []byte, depth int) ([]byte, bool) {
	end := len(b)
	// Each candidate costs a scan to the end of b; only nested "usage"
	// members after the real one are rejected, and there are few, so a cap
	// bounds the work on a hostile tail without changing real answers.
	for range maxUsageCandidates {
		k := bytes.LastIndex(b[:end], usageKey)
		if k < 0 {
			return nil, false
		}
		end = k
		// A member key follows '{' or ','. If the window starts right here
		// the byte before is unknown; let the structural check decide.
		j := k - 1
		for j >= 0 && isWS(b[j]) {
			j--
		}
		if j >= 0 && b[j] != '{' && b[j] != ',' {
			continue
		}
		i := skipWS(b, k+len(usageKey))
		if i >= len(b) || b[i] != ':' {
			continue
		}
		if i = skipWS(b, i+1); i >= len(b) || b[i] != '{' {
			continue
		}
		e, ok := skipValue(b, i)
		if ok && closesExactly(b, e, depth) {
			return b[i:e], true
		}
	}
	return nil, false
}

const maxUsageCandidates = 64

// closesExactly reports whether b[i:] is the rest of depth nested objects:
// any number of `, "key": value` members and one '}' per level, then only
// whitespace.
func closesExactly(b []byte, i, depth int) bool {
	for {
		i = skipWS(b, i)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case '}':
			depth--
			if depth == 0 {
				return skipWS(b, i+1) == len(b)
			}
			i++
		case ',':
			i = skipWS(b, i+1)
			if i >= len(b) || b[i] != '"' {
				return false
			}
			var ok bool
			if i, ok = skipString(b, i); !ok {
				return false
			}
			if i = skipWS(b, i); i >= len(b) || b[i] != ':' {
				return false
			}
			if i, ok = skipValue(b, skipWS(b, i+1)); !ok {
				return false
			}
		default:
			return false
		}
	}
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i] == '"'.
// Keys and tokens are short, so the first bytes are looked at directly;
// long strings (content, base64) are searched with IndexByte.
func skipString(b []byte, i int) (int, bool) {
	j := i + 1
	for end := min(len(b), j+16); j < end; j++ {
		switch b[j] {
		case '"':
			return j + 1, true
		case '\\':
			j++
		}
	}
	for j < len(b) {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			break
		}
		q := j + k
		// The quote is escaped when an odd number of backslashes precede
		// it (each run of backslashes is counted once: linear).
		n := 0
		for p := q - 1; p >= j && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, true
		}
		j = q + 1
	}
	return len(b), false
}

// jsonStructural marks the bytes skipValue must look at inside a container.
var jsonStructural = [256]bool{'"': true, '\\': true, '{': true, '}': true, '[': true, ']': true}

// skipValue returns the index just past the JSON value starting at b[i].
// Containers are matched by bracket depth (strings skipped), not validated:
// callers that use the bytes as data validate them.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		// One pass with a table lookup per byte: Azure's
		// content_filter_results is dozens of short strings, where calling
		// IndexByte per string costs more than it saves.
		depth, inString := 0, false
		for ; i < len(b); i++ {
			c := b[i]
			if !jsonStructural[c] {
				continue
			}
			if inString {
				switch c {
				case '\\':
					i++
				case '"':
					inString = false
				}
				continue
			}
			switch c {
			case '"':
				inString = true
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
		}
		return i, false
	case '}', ']', ',', ':':
		return i, false
	default: // number, true, false, null
		j := i
		for j < len(b) && !isWS(b[j]) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
			j++
		}
		return j, j > i
	}
}

// cursor walks one JSON document in place, front to back and once, without
// allocating: the delta of a chunk is read without first measuring the
// choices array and then each choice (which would scan Azure's
// content_filter_results three times). It is lenient about commas and
// never validates more than it needs; on malformed input it sets bad and
// every later step returns false.
type cursor struct {
	b   []byte
	i   int
	bad bool
}

func (c *cursor) skipWS() {
	for c.i < len(c.b) && isWS(c.b[c.i]) {
		c.i++
	}
}

// enter moves into the object or array ('{' or '[') at the cursor. It
// returns false, without moving, when something else is there.
func (c *cursor) enter(open byte) bool {
	c.skipWS()
	if c.bad || c.i >= len(c.b) || c.b[c.i] != open {
		return false
	}
	c.i++
	return true
}

// member moves to the next member of the object being walked and returns
// its raw key (escapes left in: the keys looked for are plain ASCII),
// leaving the cursor at the value, which the caller must consume. It
// returns false once it has consumed the closing '}'.
func (c *cursor) member() ([]byte, bool) {
	if !c.next('}') {
		return nil, false
	}
	if c.b[c.i] != '"' {
		c.bad = true
		return nil, false
	}
	e, ok := skipString(c.b, c.i)
	if !ok {
		c.bad = true
		return nil, false
	}
	key := c.b[c.i+1 : e-1]
	c.i = e
	c.skipWS()
	if c.i >= len(c.b) || c.b[c.i] != ':' {
		c.bad = true
		return nil, false
	}
	c.i++
	c.skipWS()
	return key, true
}

// elem moves to the next element of the array being walked, which the
// caller must consume. It returns false once it has consumed the ']'.
func (c *cursor) elem() bool { return c.next(']') }

// next skips a separating comma and reports whether another member or
// element follows, consuming close if not.
func (c *cursor) next(close byte) bool {
	if c.bad {
		return false
	}
	c.skipWS()
	if c.i < len(c.b) && c.b[c.i] == ',' {
		c.i++
		c.skipWS()
	}
	switch {
	case c.i >= len(c.b):
		c.bad = true
		return false
	case c.b[c.i] == close:
		c.i++
		return false
	}
	return true
}

// value consumes the value at the cursor and returns its bytes.
func (c *cursor) value() []byte {
	if c.bad {
		return nil
	}
	start := c.i
	e, ok := skipValue(c.b, c.i)
	if !ok {
		c.bad = true
		return nil
	}
	c.i = e
	return c.b[start:e]
}

// memberValue returns the raw value of obj's top-level member key.
func memberValue(obj []byte, key string) ([]byte, bool) {
	c := cursor{b: obj}
	if !c.enter('{') {
		return nil, false
	}
	for k, ok := c.member(); ok; k, ok = c.member() {
		if string(k) == key {
			v := c.value()
			return v, v != nil
		}
		c.value()
	}
	return nil, false
}

// isEmptyArray reports whether raw is `[]` (whitespace allowed inside).
func isEmptyArray(raw string) bool {
	if len(raw) < 2 || raw[0] != '[' {
		return false
	}
	i := 1
	for i < len(raw) && isWS(raw[i]) {
		i++
	}
	return i < len(raw) && raw[i] == ']'
}

// appendJSONString appends the decoded contents of the JSON string token raw
// (quotes included) to dst. Anything that is not a string (null, numbers)
// appends nothing. Malformed escapes are dropped rather than failing: the
// text is only used to estimate tokens.
func appendJSONString(dst, raw []byte) []byte {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return dst
	}
	s := raw[1 : len(raw)-1]
	for len(s) > 0 {
		k := bytes.IndexByte(s, '\\')
		if k < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:k]...)
		s = s[k:]
		if len(s) < 2 {
			return dst
		}
		switch c := s[1]; c {
		case '"', '\\', '/':
			dst = append(dst, c)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, n := decodeUnicodeEscape(s)
			dst = utf8.AppendRune(dst, r)
			s = s[n:]
			continue
		}
		s = s[2:]
	}
	return dst
}

// decodeUnicodeEscape decodes `\uXXXX` at the start of s, joining a UTF-16
// surrogate pair when a second escape follows. It returns the rune and the
// number of bytes used.
func decodeUnicodeEscape(s []byte) (rune, int) {
	r1, ok := hex4(s)
	if !ok {
		return utf8.RuneError, min(len(s), 2)
	}
	if utf16.IsSurrogate(r1) {
		if r2, ok := hex4(s[6:]); ok {
			if r := utf16.DecodeRune(r1, r2); r != utf8.RuneError {
				return r, 12
			}
		}
		return utf8.RuneError, 6
	}
	return r1, 6
}

// hex4 parses `\uXXXX` at the start of s.
func hex4(s []byte) (rune, bool) {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
