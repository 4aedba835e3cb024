package tables

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
)

// wirePolicy fixes request bodies that aztables v1.4.1 sends in a form that
// Azure or Azurite mishandle. It is a per-call policy, so it runs once per
// call, before retries and signing.
//
//   - Non-ASCII characters in JSON bodies are sent as \uXXXX escapes.
//     Azurite 3.37.0 decodes request bodies chunk by chunk (64 KiB) and turns
//     a multi-byte UTF-8 character split by a chunk boundary into U+FFFD,
//     silently corrupting the stored string. Escaped JSON is plain ASCII and
//     means the same to Azure.
//   - Single quotes in the keys of batch sub-request URLs are doubled, as
//     OData string literals require. aztables doubles them for single-entity
//     calls but not inside SubmitTransaction: Azurite accepts the result,
//     Azure's OData key parser need not. The keys there are percent-encoded
//     (url.PathEscape turns a quote into %27), so a key predicate can be
//     parsed without ambiguity and rewritten to exactly what a single-entity
//     call sends, for example PartitionKey='o%27%27brien' for o'brien.
type wirePolicy struct{}

// Do implements [policy.Policy].
func (wirePolicy) Do(req *policy.Request) (*http.Response, error) {
	raw := req.Raw()
	ct := raw.Header.Get("Content-Type")
	if req.Body() == nil || !strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(ct, "multipart/mixed") {
		return req.Next()
	}
	body, err := io.ReadAll(req.Body())
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	fixed, escaped := asciiJSON(body)
	quoted := false
	if raw.Method == http.MethodPost && strings.HasSuffix(raw.URL.Path, "/$batch") {
		fixed, quoted = quoteBatchKeys(fixed)
	}
	if !escaped && !quoted {
		if err := req.RewindBody(); err != nil {
			return nil, fmt.Errorf("rewind request body: %w", err)
		}
		return req.Next()
	}
	if err := req.SetBody(streaming.NopCloser(bytes.NewReader(fixed)), ct); err != nil {
		return nil, fmt.Errorf("set request body: %w", err)
	}
	return req.Next()
}

// asciiJSON replaces every non-ASCII character of b, which is JSON (or a
// multipart body whose only non-ASCII bytes are inside JSON strings), with
// its \uXXXX escape (a surrogate pair above U+FFFF). Outside strings JSON is
// ASCII, so this never changes the meaning.
func asciiJSON(b []byte) ([]byte, bool) {
	i := 0
	for i < len(b) && b[i] < utf8.RuneSelf {
		i++
	}
	if i == len(b) {
		return b, false
	}
	out := make([]byte, 0, len(b)+len(b)/2)
	out = append(out, b[:i]...)
	for i < len(b) {
		c := b[i]
		if c < utf8.RuneSelf {
			out = append(out, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		i += size
		if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
			out = appendEscape(appendEscape(out, r1), r2)
		} else {
			out = appendEscape(out, r)
		}
	}
	return out, true
}

// appendEscape appends \uXXXX for a rune of at most 16 bits.
func appendEscape(out []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	return append(out, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
}

// quoteBatchKeys rewrites the key predicates of the request lines
// ("PUT <url> HTTP/1.1") of a batch body. Entity JSON is always one line
// starting with '{', so property values are never touched.
func quoteBatchKeys(body []byte) ([]byte, bool) {
	var out bytes.Buffer
	changed := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), len(body)+1)
	sc.Split(scanLinesKeepEnds)
	for sc.Scan() {
		line := sc.Text()
		if isRequestLine(line) {
			if fixed, ok := quoteKeyPredicate(line); ok {
				line, changed = fixed, true
			}
		}
		out.WriteString(line)
	}
	if sc.Err() != nil {
		return body, false
	}
	return out.Bytes(), changed
}

func scanLinesKeepEnds(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func isRequestLine(line string) bool {
	for _, m := range []string{"PUT ", "PATCH ", "MERGE ", "DELETE ", "POST ", "GET "} {
		if strings.HasPrefix(line, m) {
			return strings.HasSuffix(strings.TrimRight(line, "\r\n"), " HTTP/1.1")
		}
	}
	return false
}

// quoteKeyPredicate rewrites (PartitionKey='<enc>',RowKey='<enc>') in line
// so that quotes in the decoded keys are doubled.
func quoteKeyPredicate(line string) (string, bool) {
	const pkOpen, rkOpen, closing = "(PartitionKey='", "',RowKey='", "')"
	start := strings.Index(line, pkOpen)
	if start < 0 {
		return line, false
	}
	rest := line[start+len(pkOpen):]
	pkEnd := strings.Index(rest, rkOpen)
	if pkEnd < 0 {
		return line, false
	}
	pkEnc := rest[:pkEnd]
	rest = rest[pkEnd+len(rkOpen):]
	rkEnd := strings.Index(rest, closing)
	if rkEnd < 0 {
		return line, false
	}
	rkEnc := rest[:rkEnd]
	tail := rest[rkEnd+len(closing):]
	pk, err1 := url.PathUnescape(pkEnc)
	rk, err2 := url.PathUnescape(rkEnc)
	if err1 != nil || err2 != nil || !strings.Contains(pk+rk, "'") {
		return line, false
	}
	esc := func(k string) string { return url.PathEscape(strings.ReplaceAll(k, "'", "''")) }
	return line[:start] + pkOpen + esc(pk) + rkOpen + esc(rk) + closing + tail, true
}
