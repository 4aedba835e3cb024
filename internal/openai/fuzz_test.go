package openai

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics and that what it accepts is what
// a last-key-wins parser (encoding/json, like the backends) reads: the
// gateway's caps see the same model, n and output cap as the backend.
func FuzzParse(f *testing.F) {
	f.Add(`{"model":"m","messages":[],"max_tokens":5,"n":2}`)
	f.Add(`{"model":"m","messages":[],"max_tokens":5,"max_tokens":500}`)
	f.Add(`{"model":"m","input":"x","max_output_tokens":9}`)
	f.Fuzz(func(t *testing.T, body string) {
		r, err := Parse(OpChat, StyleV1, "", "", []byte(body))
		if err != nil {
			return
		}
		// A map: case-sensitive keys, the last of equal keys wins (as in
		// Python's json, which the backends use).
		var v map[string]any
		dec := json.NewDecoder(strings.NewReader(body))
		dec.UseNumber()
		if dec.Decode(&v) != nil {
			return
		}
		if m, _ := v["model"].(string); m != r.Model {
			t.Fatalf("Parse read model %q, a backend reads %q", r.Model, m)
		}
		if n, ok := v["n"].(json.Number); ok {
			if n, err := n.Int64(); err == nil && n != r.N {
				t.Fatalf("Parse read n=%d, a backend reads %d", r.N, n)
			}
		}
		want, ok := v["max_completion_tokens"].(json.Number)
		if !ok {
			want, ok = v["max_tokens"].(json.Number)
		}
		if ok {
			if n, err := want.Int64(); err == nil && n != r.MaxOutput {
				t.Fatalf("Parse read a cap of %d, a backend reads %d", r.MaxOutput, n)
			}
		}
	})
}
