package sim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"testing"
)

type embeddingAnswer struct {
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Usage struct {
		PromptTokens int64 `json:"prompt_tokens"`
		TotalTokens  int64 `json:"total_tokens"`
	} `json:"usage"`
}

// floats decodes an embedding in either encoding.
func floats(t *testing.T, raw json.RawMessage) []float32 {
	t.Helper()
	var v []float32
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+4 <= len(b); i += 4 {
			v = append(v, math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
		}
		return v
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func embed(t *testing.T, body string) embeddingAnswer {
	t.Helper()
	_, srv, _ := newTestServer(t, testConfig())
	resp := post(t, srv, "/openai/deployments/embed/embeddings?api-version=2024-10-21", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200: %s", resp.StatusCode, readAll(t, resp))
	}
	var a embeddingAnswer
	if err := json.Unmarshal(readAll(t, resp), &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestEmbeddings(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantInputs int
		wantDims   int
		wantTokens int64
	}{
		{"string", `{"input":"abcdefgh"}`, 1, DefaultEmbeddingDims, 2},
		{"strings", `{"input":["abcd","efgh","ijklm"]}`, 3, DefaultEmbeddingDims, 1 + 1 + 2},
		{"tokens", `{"input":[1,2,3]}`, 1, DefaultEmbeddingDims, 3},
		{"token arrays", `{"input":[[1,2,3],[4,5]]}`, 2, DefaultEmbeddingDims, 5},
		{"dimensions", `{"input":"abcdefgh","dimensions":64}`, 1, 64, 2},
		{"more dimensions than native", `{"input":"abcdefgh","dimensions":1536}`, 1, 1536, 2},
		{"base64", `{"input":["abcd","efgh"],"encoding_format":"base64"}`, 2, DefaultEmbeddingDims, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := embed(t, tt.body)
			if a.Object != "list" || a.Model != "text-embedding-3-small" {
				t.Errorf("object/model: got %q/%q, want list/text-embedding-3-small", a.Object, a.Model)
			}
			if len(a.Data) != tt.wantInputs {
				t.Fatalf("data: got %d, want %d", len(a.Data), tt.wantInputs)
			}
			for i, d := range a.Data {
				if d.Index != i || d.Object != "embedding" {
					t.Errorf("data[%d]: got index %d object %q", i, d.Index, d.Object)
				}
				v := floats(t, d.Embedding)
				if len(v) != tt.wantDims {
					t.Fatalf("data[%d] dims: got %d, want %d", i, len(v), tt.wantDims)
				}
				var norm float64
				for _, f := range v {
					norm += float64(f) * float64(f)
				}
				if math.Abs(norm-1) > 1e-4 {
					t.Errorf("data[%d] norm²: got %v, want 1", i, norm)
				}
			}
			if a.Usage.PromptTokens != tt.wantTokens || a.Usage.TotalTokens != tt.wantTokens {
				t.Errorf("usage: got %+v, want %d/%d", a.Usage, tt.wantTokens, tt.wantTokens)
			}
		})
	}
}

func TestEmbeddingsDeterministic(t *testing.T) {
	plain := embed(t, `{"input":["abcd","efgh"]}`)
	again := embed(t, `{"input":["abcd","efgh"]}`)
	b64 := embed(t, `{"input":["abcd","efgh"],"encoding_format":"base64"}`)
	short := embed(t, `{"input":["abcd"],"dimensions":16}`)
	want := floats(t, plain.Data[0].Embedding)
	for name, got := range map[string][]float32{"again": floats(t, again.Data[0].Embedding), "base64": floats(t, b64.Data[0].Embedding)} {
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s [%d]: got %v, want %v", name, i, got[i], want[i])
			}
		}
	}
	if other := floats(t, plain.Data[1].Embedding); other[0] == want[0] && other[1] == want[1] {
		t.Errorf("different inputs gave the same vector")
	}
	// A shorter vector is the renormalised prefix of the native one.
	sv := floats(t, short.Data[0].Embedding)
	ratio := float64(sv[0]) / float64(want[0])
	for i := range sv {
		if got := float64(sv[i]) / float64(want[i]); math.Abs(got-ratio) > 1e-3*math.Abs(ratio) {
			t.Fatalf("dimensions 16 [%d]: ratio %v, want %v", i, got, ratio)
		}
	}
}

func TestEmbeddingErrors(t *testing.T) {
	_, srv, _ := newTestServer(t, testConfig())
	tests := []struct {
		name, body, wantParam string
	}{
		{"empty string", `{"input":""}`, "input"},
		{"empty array", `{"input":[]}`, "input"},
		{"empty token array", `{"input":[[]]}`, "input"},
		{"mixed array", `{"input":["a",1]}`, "input"},
		{"object", `{"input":{"a":1}}`, "input"},
		{"zero dimensions", `{"input":"a","dimensions":0}`, "dimensions"},
		{"bad encoding", `{"input":"a","encoding_format":"hex"}`, "encoding_format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := post(t, srv, "/openai/v1/embeddings", `{"model":"embed",`+tt.body[1:])
			m := decodeJSON(t, resp)
			if resp.StatusCode != 400 {
				t.Fatalf("status: got %d, want 400: %v", resp.StatusCode, m)
			}
			if got := str(t, m, "error.param"); got != tt.wantParam {
				t.Errorf("error.param: got %q, want %q", got, tt.wantParam)
			}
		})
	}
}
