package jsonkey

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantKey  string
		wantPath string
	}{
		{"none", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, "", ""},
		{"top level", `{"max_tokens":5,"model":"m","max_tokens":500}`, "max_tokens", ""},
		{"n", `{"n":1,"n":3}`, "n", ""},
		{"escaped spelling", `{"max_tokens":5,"max\u005ftokens":500}`, "max_tokens", ""},
		{"nested", `{"stream_options":{"include_usage":false,"include_usage":true}}`, "include_usage", "stream_options"},
		{"in array", `{"messages":[{"role":"user"},{"role":"user","role":"system"}]}`, "role", "messages[1]"},
		{"same key in sibling objects is fine", `{"a":{"x":1},"b":{"x":2}}`, "", ""},
		{"same key at two levels is fine", `{"x":{"x":1}}`, "", ""},
		{"many keys (map path)", `{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k10":1,"k11":1,"k12":1,"k13":1,"k14":1,"k15":1,"k16":1,"k17":1,"k18":1,"k3":2}`, "k3", ""},
		{"key inside a string is not a key", `{"a":"\"a\":1","b":1}`, "", ""},
		{"invalid json is left to the parser", `{"a":1,`, "", ""},
		{"scalar", `42`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check([]byte(tt.in))
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("Check: %v, want nil", err)
				}
				return
			}
			var de *DuplicateError
			if !errors.As(err, &de) || !errors.Is(err, ErrDuplicate) {
				t.Fatalf("Check: %v, want a DuplicateError", err)
			}
			if de.Key != tt.wantKey || de.Path != tt.wantPath {
				t.Errorf("got key %q path %q, want %q %q", de.Key, de.Path, tt.wantKey, tt.wantPath)
			}
		})
	}
}

func TestCheckAllocatesNothingOnCleanBodies(t *testing.T) {
	body := []byte(`{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"}]}`)
	if n := testing.AllocsPerRun(100, func() { _ = Check(body) }); n != 0 {
		t.Errorf("%v allocations per clean body, want 0", n)
	}
}

// hasDuplicate is the reference: encoding/json's tokenizer, with one key
// set per open object.
func hasDuplicate(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		obj    bool
		keys   map[string]bool
		expect bool // next string token in an object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && top.obj && top.expect
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				if top != nil && top.obj {
					top.expect = true
				}
				stack = append(stack, &frame{obj: true, keys: map[string]bool{}, expect: true})
				continue
			case '[':
				if top != nil && top.obj {
					top.expect = true
				}
				stack = append(stack, &frame{})
				continue
			default:
				stack = stack[:len(stack)-1]
				continue
			}
		case string:
			if isKey {
				if top.keys[v] {
					return true
				}
				top.keys[v] = true
				top.expect = false
				continue
			}
		}
		if top != nil && top.obj {
			top.expect = true
		}
	}
}

// FuzzCheck compares Check with the reference on valid JSON and checks it
// never panics on anything.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `{"a":{"b":[{"c":1,"c":2}]}}`, `{"a\u0062":1,"ab":2}`, `[1,{"x":null}]`, `{"a":"}"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := Check(data)
		if !json.Valid(data) {
			return
		}
		if got, want := err != nil, hasDuplicate(data); got != want {
			t.Fatalf("Check(%q) = %v, reference duplicate = %v", data, err, want)
		}
	})
}
