package sim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestContentSafety(t *testing.T) {
	cfg := testConfig()
	cfg.APIKey = "k"
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, key, body string) (int, string) {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		if key != "" {
			r.Header.Set("Ocp-Apim-Subscription-Key", key)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	const v = "?api-version=2024-09-01"
	tests := []struct {
		name, path, key, body string
		status                int
		want                  string // JSON the answer must equal ("" = only the status)
	}{
		{"analyze", "/contentsafety/text:analyze" + v, "k", `{"text":"a [cs:hate=5] b [cs:violence=6] [cs:hate=2]","categories":["Hate","Violence","Sexual"]}`, 200,
			`{"blocklistsMatch":[],"categoriesAnalysis":[{"category":"Hate","severity":4},{"category":"Violence","severity":6},{"category":"Sexual","severity":0}]}`},
		{"eight levels", "/contentsafety/text:analyze" + v, "k", `{"text":"[cs:selfharm=5]","categories":["SelfHarm"],"outputType":"EightSeverityLevels"}`, 200,
			`{"blocklistsMatch":[],"categoriesAnalysis":[{"category":"SelfHarm","severity":5}]}`},
		{"all categories by default", "/contentsafety/text:analyze" + v, "k", `{"text":"hello"}`, 200,
			`{"blocklistsMatch":[],"categoriesAnalysis":[{"category":"Hate","severity":0},{"category":"SelfHarm","severity":0},{"category":"Sexual","severity":0},{"category":"Violence","severity":0}]}`},
		{"shield", "/contentsafety/text:shieldPrompt" + v, "k", `{"userPrompt":"[cs:attack] now","documents":["fine","[cs:attack]"]}`, 200,
			`{"userPromptAnalysis":{"attackDetected":true},"documentsAnalysis":[{"attackDetected":false},{"attackDetected":true}]}`},
		{"shield clean", "/contentsafety/text:shieldPrompt" + v, "k", `{"userPrompt":"hi","documents":[]}`, 200,
			`{"userPromptAnalysis":{"attackDetected":false},"documentsAnalysis":[]}`},
		{"wrong key", "/contentsafety/text:analyze" + v, "bad", `{"text":"x"}`, 401, ""},
		{"no api-version", "/contentsafety/text:analyze", "k", `{"text":"x"}`, 400, ""},
		{"unknown api-version", "/contentsafety/text:analyze?api-version=2020-01-01", "k", `{"text":"x"}`, 404, ""},
		{"no text", "/contentsafety/text:analyze" + v, "k", `{}`, 400, ""},
		{"too long", "/contentsafety/text:analyze" + v, "k", `{"text":"` + strings.Repeat("é", 10001) + `"}`, 400, ""},
		{"unknown category", "/contentsafety/text:analyze" + v, "k", `{"text":"x","categories":["Profanity"]}`, 400, ""},
		{"not json", "/contentsafety/text:shieldPrompt" + v, "k", `{`, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := do(http.MethodPost, tt.path, tt.key, tt.body)
			if status != tt.status {
				t.Fatalf("status %d %s, want %d", status, body, tt.status)
			}
			if tt.want != "" && !jsonEqual(body, tt.want) {
				t.Errorf("got %s\nwant %s", body, tt.want)
			}
			if status >= 400 && !strings.Contains(body, `"code"`) {
				t.Errorf("error without a code: %s", body)
			}
		})
	}
	if status, _ := do(http.MethodPost, "/sim/contentsafety-fault?fault=down", "", ""); status != http.StatusNoContent {
		t.Fatal(status)
	}
	if status, _ := do(http.MethodPost, "/contentsafety/text:analyze"+v, "k", `{"text":"x"}`); status != http.StatusServiceUnavailable {
		t.Errorf("down: %d, want 503", status)
	}
	do(http.MethodPost, "/sim/contentsafety-fault?fault=", "", "")
	if status, body := do(http.MethodGet, "/sim/contentsafety", "", ""); status != 200 || !jsonEqual(body, `{"calls":5}`) {
		t.Errorf("calls: %d %s, want 5 (the answers served)", status, body)
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
