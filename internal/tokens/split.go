package tokens

import (
	"unicode"
	"unicode/utf8"
)

// The pre-tokenizers below reproduce, without a regexp engine, the split
// patterns of tiktoken's encodings as a backtracking (leftmost-first)
// engine runs them — the semantics of the reference implementation and of
// tiktoken-go's regexp2:
//
// cl100k_base:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//	 ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// o200k_base:
//
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|
//	\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// Character classes come from the stdlib unicode tables, as in regexp2:
// \s is unicode.IsSpace, \p{X} is unicode.Categories["X"], and (?i:) compares
// unicode.ToLower of each rune. Every alternative consumes at least one
// rune and every rune starts some alternative, so the pieces tile the text.
// The input must be valid UTF-8 (see validUTF8).

// Rune classes, as a bit set.
const (
	cL  uint8 = 1 << iota // \p{L}
	cN                    // \p{N}
	cS                    // \s
	cU                    // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
	cW                    // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
	cNL                   // \r or \n
)

// asciiClass holds the classes of the runes below 0x80 (256 entries so that
// indexing by a byte needs no bounds check).
var asciiClass = func() (t [256]uint8) {
	for r := range rune(utf8.RuneSelf) {
		t[r] = slowClass(r)
	}
	return t
}()

func slowClass(r rune) uint8 {
	var c uint8
	switch {
	case unicode.IsLetter(r):
		c = cL
		switch {
		case unicode.Is(unicode.Ll, r):
			c |= cW
		case unicode.Is(unicode.Lu, r), unicode.Is(unicode.Lt, r):
			c |= cU
		default: // Lm, Lo
			c |= cU | cW
		}
	case unicode.IsMark(r):
		c = cU | cW
	case unicode.IsNumber(r):
		c = cN
	}
	if unicode.IsSpace(r) {
		c |= cS
	}
	if r == '\r' || r == '\n' {
		c |= cNL
	}
	return c
}

// at decodes the rune at byte i of s (i < len(s)) and its class.
// It is small enough to inline: ASCII is a table lookup.
func at(s string, i int) (rune, int, uint8) {
	if b := s[i]; b < utf8.RuneSelf {
		return rune(b), 1, asciiClass[b]
	}
	return atSlow(s, i)
}

func atSlow(s string, i int) (rune, int, uint8) {
	r, n := utf8.DecodeRuneInString(s[i:])
	return r, n, slowClass(r)
}

// classAt is the class of the rune at i, 0 past the end.
func classAt(s string, i int) uint8 {
	if i >= len(s) {
		return 0
	}
	_, _, c := at(s, i)
	return c
}

// run returns the end of the longest run from i of runes having any of the
// classes in want.
func run(s string, i int, want uint8) int {
	for i < len(s) {
		if b := s[i]; b < utf8.RuneSelf { // ASCII, inline
			if asciiClass[b]&want == 0 {
				break
			}
			i++
			continue
		}
		_, n, c := atSlow(s, i)
		if c&want == 0 {
			break
		}
		i += n
	}
	return i
}

// contraction returns the end of (?i:'s|'t|'re|'ve|'m|'ll|'d) at i, or -1.
func contraction(s string, i int) int {
	if i >= len(s) || s[i] != '\'' || i+1 >= len(s) {
		return -1
	}
	r1, n1, _ := at(s, i+1)
	switch unicode.ToLower(r1) {
	case 's', 't', 'm', 'd':
		return i + 1 + n1
	case 'r', 'v', 'l':
		j := i + 1 + n1
		if j >= len(s) {
			return -1
		}
		r2, n2, _ := at(s, j)
		l1, l2 := unicode.ToLower(r1), unicode.ToLower(r2)
		if (l1 == 'r' || l1 == 'v') && l2 == 'e' || l1 == 'l' && l2 == 'l' {
			return j + n2
		}
	}
	return -1
}

// isPrefix reports [^\r\n\p{L}\p{N}].
func isPrefix(c uint8) bool { return c&(cL|cN|cNL) == 0 }

// isPunct reports [^\s\p{L}\p{N}].
func isPunct(c uint8) bool { return c&(cL|cN|cS) == 0 }

// spaces matches \s*[\r\n]+|\s+(?!\S)|\s+ at i, where s[i] is \s.
func spaces(s string, i int) int {
	end, lastNL, lastStart := i, -1, i
	for end < len(s) {
		r, n, c := at(s, end)
		if c&cS == 0 {
			break
		}
		if r == '\r' || r == '\n' {
			lastNL = end
		}
		lastStart = end
		end += n
	}
	switch {
	case lastNL >= 0: // \s*[\r\n]+: backtrack to the last newline of the run
		return lastNL + 1
	case end == len(s): // \s+(?!\S) at the end of the text
		return end
	case lastStart > i: // \s+(?!\S): leave the last space to the next piece
		return lastStart
	}
	return end // \s+
}

// nextCL100K returns the end of the cl100k_base piece starting at i.
func nextCL100K(s string, i int) int {
	r0, n0, c0 := at(s, i)
	if r0 == '\'' {
		if e := contraction(s, i); e > 0 {
			return e
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c0&cL != 0 {
		return run(s, i+n0, cL)
	}
	if isPrefix(c0) && classAt(s, i+n0)&cL != 0 {
		return run(s, i+n0, cL)
	}
	// \p{N}{1,3}
	if c0&cN != 0 {
		j := i + n0
		for k := 1; k < 3 && j < len(s); k++ {
			_, n, c := at(s, j)
			if c&cN == 0 {
				break
			}
			j += n
		}
		return j
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	j := i
	if r0 == ' ' {
		j++
	}
	if e := punctRun(s, j); e > j {
		return run(s, e, cNL)
	}
	return spaces(s, i)
}

// punctRun returns the end of [^\s\p{L}\p{N}]* from i.
func punctRun(s string, i int) int {
	for i < len(s) {
		_, n, c := at(s, i)
		if !isPunct(c) {
			break
		}
		i += n
	}
	return i
}

// o200kLower matches [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+
// then the optional contraction at i, or returns -1.
func o200kLower(s string, i int) int {
	uEnd, lastW := i, -1
	for uEnd < len(s) {
		_, n, c := at(s, uEnd)
		if c&cU == 0 {
			break
		}
		if c&cW != 0 {
			lastW = uEnd
		}
		uEnd += n
	}
	// The greedy U* gives back runes until W+ can start.
	k := lastW
	if classAt(s, uEnd)&cW != 0 {
		k = uEnd
	}
	if k < 0 {
		return -1
	}
	e := run(s, k, cW)
	if c := contraction(s, e); c > 0 {
		return c
	}
	return e
}

// o200kUpper matches [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*
// then the optional contraction at i, or returns -1.
func o200kUpper(s string, i int) int {
	if classAt(s, i)&cU == 0 {
		return -1
	}
	e := run(s, run(s, i, cU), cW)
	if c := contraction(s, e); c > 0 {
		return c
	}
	return e
}

// nextO200K returns the end of the o200k_base piece starting at i.
func nextO200K(s string, i int) int {
	r0, n0, c0 := at(s, i)
	pre := isPrefix(c0)
	// The two letter alternatives, each first with the optional prefix rune.
	if pre {
		if e := o200kLower(s, i+n0); e > 0 {
			return e
		}
	}
	if e := o200kLower(s, i); e > 0 {
		return e
	}
	if pre {
		if e := o200kUpper(s, i+n0); e > 0 {
			return e
		}
	}
	if e := o200kUpper(s, i); e > 0 {
		return e
	}
	// \p{N}{1,3}
	if c0&cN != 0 {
		j := i + n0
		for k := 1; k < 3 && j < len(s); k++ {
			_, n, c := at(s, j)
			if c&cN == 0 {
				break
			}
			j += n
		}
		return j
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n/]*'
	j := i
	if r0 == ' ' {
		j++
	}
	if e := punctRun(s, j); e > j {
		for e < len(s) && (s[e] == '\r' || s[e] == '\n' || s[e] == '/') {
			e++
		}
		return e
	}
	return spaces(s, i)
}

// validUTF8 returns s with every byte of an invalid UTF-8 sequence replaced
// by U+FFFD, as Go's []rune(s) conversion (and so tiktoken-go) does.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}
