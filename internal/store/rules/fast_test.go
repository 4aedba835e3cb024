package rules

import (
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/foundry-gateway/gateway/internal/store"
)

// The ASCII fast paths (issue 17) agree with the full checks they skip,
// on random strings over the characters that matter.
func TestFastPathsAgree(t *testing.T) {
	alphabet := []string{"a", "Z", "0", "9", "_", "-", ".", "~", "$", "&", "+", ":", "=", "@", "|", "'", " ", "/", `\`,
		"#", "?", ";", ",", "%", `"`, "<", ">", "\n", "\t", "\x00", "\x1f", "\x7f", "\u0080", "\u009f", "é", "日", "😀",
		"\xff", "\xc2"}
	r := rand.New(rand.NewPCG(3, 4))
	for range 50000 {
		var b strings.Builder
		for n := r.IntN(10); n > 0; n-- {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		if r.IntN(50) == 0 {
			b.WriteString(strings.Repeat("k", 500+r.IntN(30))) // around the key length limit
		}
		s := b.String()
		if got, want := utf16Len(s), utf16LenRef(s); got != want {
			t.Fatalf("utf16Len(%q) = %d, want %d", s, got, want)
		}
		if got, want := jsonLen(s), jsonLenRef(s); got != want {
			t.Fatalf("jsonLen(%q) = %d, want %d", s, got, want)
		}
		if got, want := urlKeyLen(s), len(url.PathEscape(strings.ReplaceAll(s, "'", "''"))); got != want {
			t.Fatalf("urlKeyLen(%q) = %d, want %d", s, got, want)
		}
		if got, want := Key(s) == nil, keyRef(s) == nil; got != want {
			t.Fatalf("Key(%q) ok=%v, want %v", s, got, want)
		}
		if got, want := PropName(s) == nil, propNameRef(s) == nil; got != want {
			t.Fatalf("PropName(%q) ok=%v, want %v", s, got, want)
		}
	}
}

// The checks as they were before their fast paths.

func utf16LenRef(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

func jsonLenRef(s string) int {
	n := 2
	for _, r := range s {
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

func keyRef(k string) error {
	if k == "" {
		return invalid("empty key")
	}
	if !utf8.ValidString(k) {
		return invalid("not UTF-8")
	}
	if n := 2 * utf16LenRef(k); n > store.MaxKeyLen {
		return invalid("too long")
	}
	for _, r := range k {
		switch {
		case r == '/' || r == '\\' || r == '#' || r == '?':
			return invalid("contains %q", r)
		case r <= 0x1f || r >= 0x7f && r <= 0x9f:
			return invalid("control character")
		}
	}
	return nil
}

func propNameRef(name string) error {
	if name == "" {
		return invalid("empty property name")
	}
	if utf8.RuneCountInString(name) > store.MaxPropNameLen {
		return invalid("too long")
	}
	switch name {
	case "PartitionKey", "RowKey", "Timestamp":
		return invalid("reserved")
	}
	for i, r := range name {
		if !(r == '_' || unicode.IsLetter(r) || i > 0 && unicode.IsDigit(r)) {
			return invalid("not an identifier")
		}
	}
	return nil
}
