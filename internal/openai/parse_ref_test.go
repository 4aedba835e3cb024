package openai

import (
	"fmt"
	"testing"

	"github.com/tidwall/gjson"
)

// parseByGets is Parse as it was before issue 17: one gjson Get per field.
// FuzzParseOnePass checks the one-pass Parse against it.
func parseByGets(op Op, style Style, pathModel, apiVersion string, body []byte) (Request, error) {
	if _, err := Parse(op, style, pathModel, apiVersion, body); err != nil && !isMissing(err) {
		return Request{}, err // the same validation steps
	}
	root := gjson.ParseBytes(body)
	f := root.Get
	r := Request{Op: op, Style: style, APIVersion: apiVersion, N: 1}
	if style == StyleDeployment {
		r.Model = pathModel
	} else {
		m := f("model")
		if m.Type != gjson.String || m.Str == "" {
			return Request{}, fmt.Errorf("%w: model", ErrMissing)
		}
		r.Model = m.Str
	}
	switch op {
	case OpChat:
		if !f("messages").IsArray() {
			return Request{}, fmt.Errorf("%w: messages", ErrMissing)
		}
	case OpCompletions, OpImages:
		if !f("prompt").Exists() {
			return Request{}, fmt.Errorf("%w: prompt", ErrMissing)
		}
	case OpEmbeddings, OpResponses, OpSpeech:
		if !f("input").Exists() {
			return Request{}, fmt.Errorf("%w: input", ErrMissing)
		}
	}
	r.Stream = f("stream").Bool()
	r.IncludeUsage = f("stream_options.include_usage").Bool()
	for _, k := range []string{"max_completion_tokens", "max_tokens", "max_output_tokens"} {
		if v := f(k); v.Exists() && v.Type == gjson.Number {
			r.MaxOutput = v.Int()
			break
		}
	}
	if v := f("n"); v.Type == gjson.Number {
		r.N = v.Int()
	}
	r.PreviousResponseID = f("previous_response_id").Str
	return r, nil
}

func isMissing(err error) bool {
	for e := err; e != nil; {
		if e == ErrMissing { //nolint:errorlint // walking the chain by hand
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

func FuzzParseOnePass(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[],"max_tokens":5,"n":2}`,
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"m","input":"x","max_output_tokens":9,"previous_response_id":"resp_1"}`,
		`{"mod\u0065l":"m","prompt":"p","max_tokens":"5","max_completion_tokens":7,"n":"3","stream":"true"}`,
		`{"model":"","messages":{}}`, `{"model":1,"input":null}`, `[]`, `{"stream":1,"stream_options":"x"}`,
		string(benchChat),
	} {
		f.Add(s, uint8(0))
	}
	ops := []Op{OpChat, OpCompletions, OpEmbeddings, OpResponses, OpImages, OpSpeech}
	f.Fuzz(func(t *testing.T, body string, sel uint8) {
		op, style := ops[int(sel)%len(ops)], Style(int(sel/8)%3)
		got, gerr := Parse(op, style, "dep", "2024-10-21", []byte(body))
		want, werr := parseByGets(op, style, "dep", "2024-10-21", []byte(body))
		if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
			t.Fatalf("%s: error %v, want %v", body, gerr, werr)
		}
		if got != want {
			t.Fatalf("%s: %+v, want %+v", body, got, want)
		}
	})
}
