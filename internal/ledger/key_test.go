package ledger

import (
	"math/rand/v2"
	"testing"
)

// EncodeKey's fast path (keySafe) returns s exactly when the escaping
// would leave it unchanged: checked on random strings over the bytes that
// matter (escaped ASCII, C1 controls in UTF-8, other UTF-8, invalid bytes).
func TestEncodeKeyFastPathAgrees(t *testing.T) {
	alphabet := []string{"a", "Z", "0", "-", ".", " ", "/", `\`, "#", "?", "|", "%", "'", "\t", "\x7f", "\x00",
		"\u0080", "\u009f", "\u00a0", "é", "日", "\xc2", "\x80", "\x9f", "\xff", "\xc2\xc2\x85"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		s := ""
		for n := r.IntN(8); n > 0; n-- {
			s += alphabet[r.IntN(len(alphabet))]
		}
		want := encodeKey(s)
		if got := EncodeKey(s); got != want {
			t.Fatalf("EncodeKey(%q) = %q, want %q", s, got, want)
		}
		if keySafe(s) != (want == s) {
			t.Fatalf("keySafe(%q) = %v, but the escaping gives %q", s, keySafe(s), want)
		}
	}
}

// The ledger writer encodes several keys per event: an ordinary key
// costs no allocation.
func TestEncodeKeyOrdinaryAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = EncodeKey("0193a1b2c3d4e5f60718293a4b5c6d7e") }); n != 0 {
		t.Errorf("EncodeKey of a request id: %v allocations, want 0", n)
	}
}
