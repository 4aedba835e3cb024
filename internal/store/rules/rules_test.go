package rules

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/foundry-gateway/gateway/internal/store"
)

// jsonLen must bound encoding/json's output once non-ASCII characters are
// sent as \uXXXX escapes (6 bytes, 12 above U+FFFF).
func TestJSONLenIsUpperBound(t *testing.T) {
	tests := []string{
		"", "plain", `"quoted" \back\`, "\n\r\t\b\f\x00\x1f\x7f", "<a>&amp;</a>",
		"é", "日本語", "😀👍", "\u2028\u2029", "a\xffb", strings.Repeat("mixé😀<", 100),
	}
	for _, s := range tests {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		wire := 0
		for _, r := range string(b) {
			switch {
			case r < utf8.RuneSelf:
				wire++
			case r > 0xffff:
				wire += 12
			default:
				wire += 6
			}
		}
		if got := jsonLen(s); got < wire {
			t.Errorf("jsonLen(%q): got %d, want at least %d", s, got, wire)
		}
	}
}

func TestTable(t *testing.T) {
	tests := []struct {
		name, want string
		ok         bool
	}{
		{"Abc", "abc", true},
		{"quota2", "quota2", true},
		{"ab", "", false},
		{"tables", "", false},
		{"TABLES", "", false},
		{"9lives", "", false},
	}
	for _, tt := range tests {
		got, err := Table(tt.name)
		if tt.ok && (err != nil || got != tt.want) {
			t.Errorf("Table(%q): got %q, %v, want %q", tt.name, got, err, tt.want)
		}
		if !tt.ok && !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Table(%q): got %v, want %v", tt.name, err, store.ErrInvalid)
		}
	}
}

func TestKeyLength(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{strings.Repeat("a", 512), true},
		{strings.Repeat("a", 513), false},
		{strings.Repeat("é", 512), true}, // 1024 UTF-8 bytes, 512 UTF-16 units
		{strings.Repeat("😀", 256), true},
		{strings.Repeat("😀", 256) + "a", false},
	}
	for _, tt := range tests {
		err := Key(tt.key)
		if tt.ok != (err == nil) {
			t.Errorf("Key(%d bytes): got %v, want ok=%v", len(tt.key), err, tt.ok)
		}
	}
}
