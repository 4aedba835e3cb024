package jsonkey

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// ErrDuplicate is wrapped by the error Check returns for a repeated key.
var ErrDuplicate = errors.New("duplicate key")

// DuplicateError names the first repeated key and where it is.
type DuplicateError struct {
	// Key is the repeated key, unescaped.
	Key string
	// Path is the dotted path of the object holding it ("" at the top).
	Path string
}

func (e *DuplicateError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("duplicate key %q", e.Key)
	}
	return fmt.Sprintf("duplicate key %q in %s", e.Key, e.Path)
}

// Unwrap lets errors.Is match ErrDuplicate.
func (e *DuplicateError) Unwrap() error { return ErrDuplicate }

// maxDepth bounds nesting (the same limit as encoding/json's decoder).
const maxDepth = 10000

// Check returns a *DuplicateError for the first object (in document order)
// that repeats a key, comparing keys after unescaping ("a" and "\u0061"
// are the same key). Text that is not valid JSON returns nil: whoever
// parses it next reports the syntax error, and Check never panics.
func Check(data []byte) error {
	s := scanner{data: data}
	s.ws()
	if de := s.value(0); de != nil {
		return de
	}
	return nil
}

type scanner struct {
	data []byte
	i    int
	bad  bool // invalid JSON: stop quietly
}

func (s *scanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value scans one value. Paths in errors are built while unwinding, so
// the scan allocates nothing unless it finds a repeat.
func (s *scanner) value(depth int) *DuplicateError {
	if s.bad || s.i >= len(s.data) || depth > maxDepth {
		s.bad = true
		return nil
	}
	switch s.data[s.i] {
	case '{':
		return s.object(depth + 1)
	case '[':
		s.i++
		s.ws()
		if s.i < len(s.data) && s.data[s.i] == ']' {
			s.i++
			return nil
		}
		for n := 0; ; n++ {
			s.ws()
			if de := s.value(depth + 1); de != nil || s.bad {
				if de != nil {
					de.Path = prefix("["+strconv.Itoa(n)+"]", de.Path)
				}
				return de
			}
			s.ws()
			if s.i >= len(s.data) {
				s.bad = true
				return nil
			}
			switch s.data[s.i] {
			case ',':
				s.i++
			case ']':
				s.i++
				return nil
			default:
				s.bad = true
				return nil
			}
		}
	case '"':
		s.str()
		return nil
	default:
		// number, true, false, null: skip to a delimiter.
		for s.i < len(s.data) {
			switch s.data[s.i] {
			case ',', ']', '}', ' ', '\t', '\n', '\r':
				return nil
			}
			s.i++
		}
		return nil
	}
}

// object scans {...} and checks its keys for repeats. Small objects compare
// raw key bytes pairwise (no allocation); large ones use a map.
func (s *scanner) object(depth int) *DuplicateError {
	s.i++ // '{'
	var small [16][]byte
	keys := small[:0]
	var seen map[string]struct{}
	for first := true; ; first = false {
		s.ws()
		if s.i >= len(s.data) {
			s.bad = true
			return nil
		}
		if first && s.data[s.i] == '}' {
			s.i++
			return nil
		}
		if s.data[s.i] != '"' {
			s.bad = true
			return nil
		}
		raw, escaped := s.str()
		if s.bad {
			return nil
		}
		key := raw
		if escaped {
			var k string
			if json.Unmarshal(raw, &k) != nil {
				s.bad = true
				return nil
			}
			key = []byte(k)
		} else {
			key = raw[1 : len(raw)-1]
		}
		if seen == nil && len(keys) < cap(small) {
			for _, k := range keys {
				if string(k) == string(key) {
					return &DuplicateError{Key: printable(key)}
				}
			}
			keys = append(keys, key)
		} else {
			if seen == nil {
				seen = make(map[string]struct{}, 2*len(keys))
				for _, k := range keys {
					seen[string(k)] = struct{}{}
				}
			}
			if _, dup := seen[string(key)]; dup {
				return &DuplicateError{Key: printable(key)}
			}
			seen[string(key)] = struct{}{}
		}
		s.ws()
		if s.i >= len(s.data) || s.data[s.i] != ':' {
			s.bad = true
			return nil
		}
		s.i++
		s.ws()
		if de := s.value(depth); de != nil || s.bad {
			if de != nil {
				de.Path = prefix(printable(key), de.Path)
			}
			return de
		}
		s.ws()
		if s.i >= len(s.data) {
			s.bad = true
			return nil
		}
		switch s.data[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			s.bad = true
			return nil
		}
	}
}

// str scans a string at s.i and returns it with its quotes, and whether
// it holds escapes.
func (s *scanner) str() (raw []byte, escaped bool) {
	start := s.i
	s.i++ // opening quote
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case '\\':
			escaped = true
			s.i += 2
		case '"':
			s.i++
			return s.data[start:s.i], escaped
		default:
			s.i++
		}
	}
	s.bad = true
	return nil, false
}

// prefix puts an enclosing member (name or [index]) before path.
func prefix(member, path string) string {
	switch {
	case path == "":
		return member
	case path[0] == '[':
		return member + path
	default:
		return member + "." + path
	}
}

// printable keeps error messages valid UTF-8 and short.
func printable(k []byte) string {
	if len(k) > 64 {
		k = k[:64]
	}
	if !utf8.Valid(k) {
		return strconv.Quote(string(k))
	}
	return string(k)
}
