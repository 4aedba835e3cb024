package audit

import (
	"fmt"
	"regexp"
	"strings"
)

// Redacted replaces what a redaction rule matches.
const Redacted = "[REDACTED]"

// Built-in PII patterns (RedactPII). They are deliberately narrow, to keep
// ids and numbers of the JSON bodies intact: phone numbers need a country code,
// an area code in parentheses or the 555-555-5555 form,
// and card numbers must pass the Luhn check.
var (
	emailRE = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`)
	phoneRE = regexp.MustCompile(`(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)|\d{1,4})(?:[ .-]?\d{2,4}){2,4}|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}|\b\d{3}[.-]\d{3}[.-]\d{4})\b`)
	cardRE  = regexp.MustCompile(`\b\d(?:[ -]?\d){12,18}\b`)
)

// Redactor replaces sensitive text in bodies before they are written.
type Redactor struct {
	pii   bool
	rules []*regexp.Regexp
}

// NewRedactor compiles the rules; pii adds the built-in patterns (e-mail,
// phone, card numbers).
func NewRedactor(pii bool, rules []string) (*Redactor, error) {
	r := &Redactor{pii: pii}
	for _, s := range rules {
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("audit: redaction rule %q: %w", s, err)
		}
		r.rules = append(r.rules, re)
	}
	return r, nil
}

// Active reports whether any rule is set.
func (r *Redactor) Active() bool { return r != nil && (r.pii || len(r.rules) > 0) }

// Apply returns s with every match replaced, and the number replaced.
func (r *Redactor) Apply(s string) (string, int) {
	if !r.Active() || s == "" {
		return s, 0
	}
	n := 0
	repl := func(re *regexp.Regexp, keep func(s string, start, end int) bool) {
		locs := re.FindAllStringIndex(s, -1)
		if len(locs) == 0 {
			return
		}
		var b strings.Builder
		last := 0
		for _, l := range locs {
			if keep != nil && keep(s, l[0], l[1]) {
				continue
			}
			b.WriteString(s[last:l[0]])
			b.WriteString(Redacted)
			last = l[1]
			n++
		}
		b.WriteString(s[last:])
		s = b.String()
	}
	for _, re := range r.rules {
		repl(re, nil)
	}
	if r.pii {
		repl(emailRE, nil)
		repl(cardRE, keepNumber)
		repl(phoneRE, keepNumber)
	}
	return s, n
}

// keepNumber keeps a match that is part of a larger number (the digits of
// a float such as an embedding's 0.0123456789012345, or of an exponent) and
// a card number that fails the Luhn check.
func keepNumber(s string, start, end int) bool {
	if start > 0 && (s[start-1] == '.' || s[start-1] >= '0' && s[start-1] <= '9') {
		return true
	}
	if end < len(s) && (s[end] == '.' || s[end] == 'e' || s[end] == 'E' || s[end] >= '0' && s[end] <= '9') {
		return true
	}
	m := s[start:end]
	digits := 0
	for i := 0; i < len(m); i++ {
		if m[i] >= '0' && m[i] <= '9' {
			digits++
		}
	}
	return digits >= 13 && !luhn(m)
}

// luhn reports whether the digits of s pass the Luhn checksum.
func luhn(s string) bool {
	sum, double := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c < '0' || c > '9' {
			continue
		}
		d := int(c - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// redact applies r to the record's text bodies.
func (r *Redactor) redact(rec *Record) {
	if !r.Active() {
		return
	}
	var a, b int
	rec.Request, a = r.Apply(rec.Request)
	rec.Response, b = r.Apply(rec.Response)
	rec.Redacted += a + b
}
