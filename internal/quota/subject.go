package quota

import (
	"strconv"
	"strings"
	"time"
)

// Kind is the kind of a subject a limit applies to.
type Kind string

// Subject kinds. Every request is checked against each that applies.
const (
	KindKey  Kind = "key"
	KindApp  Kind = "app"
	KindTeam Kind = "team"
)

// Subject is one thing limits apply to: a key, an app or a team.
type Subject struct {
	Kind Kind
	ID   string
}

func (s Subject) String() string { return string(s.Kind) + ":" + s.ID }

// partitionKey is the Counters PartitionKey of s: "<kind>:<escaped id>".
func (s Subject) partitionKey() string { return string(s.Kind) + ":" + escapeKey(s.ID) }

// escapeKey makes s safe as (part of) a Table Storage key: letters, digits,
// '-', '_', '.' and '@' stay; every other byte becomes ~XX (upper-case hex),
// so '/', '\', '#', '?', control characters and our own '|' separator never
// appear, and distinct ids stay distinct.
func escapeKey(s string) string {
	safe := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '@'
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !safe(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if safe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// unescapeKey reverses escapeKey.
func unescapeKey(s string) string {
	if !strings.Contains(s, "~") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '~' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// windowStart returns the start of the fixed window of length w that holds
// t. Windows are aligned to the Unix epoch, so every instance agrees.
func windowStart(t time.Time, w time.Duration) time.Time {
	ns := t.UnixNano()
	d := int64(w)
	idx := ns / d
	if ns < 0 && ns%d != 0 {
		idx--
	}
	return time.Unix(0, idx*d).UTC()
}

// windowKey is the RowKey prefix of the window that starts at start:
// m:<yyyymmddHHMM> for one-minute windows (readable by operators), and
// w<secs>:<window index since the epoch> for any other length.
func windowKey(start time.Time, w time.Duration) string {
	if w == time.Minute {
		return "m:" + start.UTC().Format("200601021504")
	}
	secs := int64(w / time.Second)
	return "w" + strconv.FormatInt(secs, 10) + ":" + strconv.FormatInt(start.Unix()/secs, 10)
}

// monthStart returns the first instant of t's UTC calendar month.
func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// monthKey is the RowKey prefix of the month that starts at start: mo:<yyyymm>.
func monthKey(start time.Time) string { return "mo:" + start.Format("200601") }

// Table names (before the configured prefix).
const (
	CountersTable = "Counters"
	LimitsTable   = "Limits"
)
