package sim

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRequestErrors(t *testing.T) {
	_, srv, _ := newTestServer(t, testConfig())
	user := `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name       string
		method     string
		path, body string
		wantStatus int
		wantCode   string
		wantParam  string
		header     string // optional x-sim-fault value
	}{
		{"missing api-version", "POST", "/openai/deployments/chat/chat/completions", `{` + user + `}`, 400, "MissingApiVersionParameter", "api-version", ""},
		{"unknown deployment", "POST", "/openai/deployments/nope/chat/completions?api-version=2024-10-21", `{` + user + `}`, 404, "DeploymentNotFound", "", ""},
		{"unknown v1 model", "POST", "/openai/v1/chat/completions", `{"model":"nope",` + user + `}`, 404, "DeploymentNotFound", "", ""},
		{"v1 without model", "POST", "/openai/v1/chat/completions", `{` + user + `}`, 400, "missing_required_parameter", "model", ""},
		{"malformed JSON", "POST", classicChat, `{"messages":[`, 400, "invalid_json", "", ""},
		{"malformed JSON on v1", "POST", "/openai/v1/chat/completions", `not json`, 400, "invalid_json", "", ""},
		{"wrong type", "POST", classicChat, `{"messages":"hi"}`, 400, "invalid_value", "messages", ""},
		{"missing messages", "POST", classicChat, `{}`, 400, "missing_required_parameter", "messages", ""},
		{"empty messages", "POST", classicChat, `{"messages":[]}`, 400, "invalid_value", "messages", ""},
		{"missing role", "POST", classicChat, `{"messages":[{"content":"x"}]}`, 400, "missing_required_parameter", "messages.[0].role", ""},
		{"missing prompt", "POST", "/openai/deployments/chat/completions?api-version=2024-10-21", `{}`, 400, "missing_required_parameter", "prompt", ""},
		{"missing input", "POST", "/openai/v1/responses", `{"model":"chat"}`, 400, "missing_required_parameter", "input", ""},
		{"missing embeddings input", "POST", "/openai/v1/embeddings", `{"model":"embed"}`, 400, "missing_required_parameter", "input", ""},
		{"embeddings on a chat model", "POST", "/openai/v1/embeddings", `{"model":"chat","input":"x"}`, 400, "OperationNotSupported", "", ""},
		{"chat on an embeddings model", "POST", "/openai/deployments/embed/chat/completions?api-version=2024-10-21", `{` + user + `}`, 400, "OperationNotSupported", "", ""},
		{"stream_options on an old api-version", "POST", "/openai/deployments/chat/chat/completions?api-version=2024-06-01", `{"stream":true,"stream_options":{"include_usage":true},` + user + `}`, 400, "unsupported_parameter", "stream_options", ""},
		{"stream_options without stream", "POST", classicChat, `{"stream_options":{"include_usage":true},` + user + `}`, 400, "invalid_value", "stream_options", ""},
		{"azure-style responses need api-version", "POST", "/openai/responses", `{"model":"chat","input":"x"}`, 400, "MissingApiVersionParameter", "api-version", ""},
		{"responses on a deployment path", "POST", "/openai/deployments/chat/responses?api-version=2025-04-01-preview", `{"input":"x"}`, 404, "404", "", ""},
		{"unknown path", "POST", "/openai/v1/images/variations", `{}`, 404, "404", "", ""},
		{"outside /openai", "GET", "/", ``, 404, "404", "", ""},
		{"GET on a POST route", "GET", classicChat, ``, 405, "405", "", ""},
		{"bad steering header value", "POST", classicChat, `{` + user + `}`, 400, "invalid_value", "", "explode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if tt.header != "" {
				req.Header.Set(HeaderFault, tt.header)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			m := decodeJSON(t, resp)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d: %v", resp.StatusCode, tt.wantStatus, m)
			}
			if got := str(t, m, "error.code"); got != tt.wantCode {
				t.Errorf("error.code: got %q, want %q", got, tt.wantCode)
			}
			if str(t, m, "error.message") == "" {
				t.Errorf("error.message is empty")
			}
			if tt.wantParam != "" {
				if got := str(t, m, "error.param"); got != tt.wantParam {
					t.Errorf("error.param: got %q, want %q", got, tt.wantParam)
				}
			}
			if resp.Header.Get("apim-request-id") == "" {
				t.Errorf("apim-request-id missing on an error")
			}
		})
	}
}

func TestAPIKey(t *testing.T) {
	cfg := testConfig()
	cfg.APIKey = "sekret"
	_, srv, _ := newTestServer(t, cfg)
	tests := []struct {
		name       string
		headers    []string
		wantStatus int
	}{
		{"no key", nil, 401},
		{"wrong api-key", []string{"api-key", "nope"}, 401},
		{"api-key", []string{"api-key", "sekret"}, 200},
		{"bearer", []string{"Authorization", "Bearer sekret"}, 200},
		{"wrong bearer", []string{"Authorization", "Bearer nope"}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := post(t, srv, classicChat, chatBody, tt.headers...)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus == 401 {
				m := decodeJSON(t, resp)
				if got, want := str(t, m, "error.code"), "401"; got != want {
					t.Errorf("error.code: got %q, want %q", got, want)
				}
			}
		})
	}
	// The operator endpoints need no key.
	resp, err := srv.Client().Get(srv.URL + "/sim/usage")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/sim/usage status: got %d, want 200", resp.StatusCode)
	}
}

func TestControlEndpoints(t *testing.T) {
	s, srv, _ := newTestServer(t, testConfig())
	m := decodeJSON(t, post(t, srv, classicChat, chatBody))
	post(t, srv, "/openai/v1/embeddings", `{"model":"embed","input":["abcd","efgh"]}`)

	resp, err := srv.Client().Get(srv.URL + "/sim/usage")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]Totals
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := map[string]Totals{
		"chat":  {Requests: 1, PromptTokens: num(t, m, "usage.prompt_tokens"), CompletionTokens: num(t, m, "usage.completion_tokens")},
		"embed": {Requests: 1, PromptTokens: 2},
	}
	if len(got) != len(want) || got["chat"] != want["chat"] || got["embed"] != want["embed"] {
		t.Errorf("/sim/usage: got %+v, want %+v", got, want)
	}
	if s.Usage()["chat"] != want["chat"] {
		t.Errorf("Usage(): got %+v, want %+v", s.Usage()["chat"], want["chat"])
	}

	if resp := post(t, srv, "/sim/reset", ""); resp.StatusCode != http.StatusNoContent {
		t.Errorf("/sim/reset status: got %d, want 204", resp.StatusCode)
	}
	if got := s.Usage(); len(got) != 0 {
		t.Errorf("Usage after reset: got %+v, want empty", got)
	}
	resp, err = srv.Client().Get(srv.URL + "/sim/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/sim/healthz status: got %d, want 200", resp.StatusCode)
	}
}

func TestConcurrentUsage(t *testing.T) {
	s, srv, _ := newTestServer(t, testConfig())
	const workers, each = 8, 10
	one := decodeJSON(t, post(t, srv, classicChat, chatBody))
	s.Reset()
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for range each {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+classicChat, strings.NewReader(chatBody))
				resp, err := srv.Client().Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got := s.Usage()["chat"]
	want := Totals{Requests: workers * each, PromptTokens: workers * each * num(t, one, "usage.prompt_tokens"),
		CompletionTokens: workers * each * num(t, one, "usage.completion_tokens")}
	if got != want {
		t.Errorf("Usage: got %+v, want %+v", got, want)
	}
}

func TestConfig(t *testing.T) {
	base := func(mut func(*Config)) Config {
		c := testConfig()
		mut(&c)
		return c
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"default config", DefaultConfig(), ""},
		{"test config", testConfig(), ""},
		{"no deployments", Config{}, "at least one deployment"},
		{"duplicate names", base(func(c *Config) { c.Deployments = append(c.Deployments, Deployment{Name: "chat"}) }), "duplicate"},
		{"empty name", base(func(c *Config) { c.Deployments[0].Name = "" }), "name is required"},
		{"slash in name", base(func(c *Config) { c.Deployments[0].Name = "a/b" }), "path segment"},
		{"provisioned without capacity", base(func(c *Config) { c.Deployments[1].PTUCapacityTPM = 0 }), "ptuCapacityTPM > 0"},
		{"provisioned with tpm", base(func(c *Config) { c.Deployments[1].TPM = 5 }), "no tpm/rpm"},
		{"capacity on standard", base(func(c *Config) { c.Deployments[0].PTUCapacityTPM = 5 }), "only to provisioned"},
		{"rate above 1", base(func(c *Config) { c.Deployments[0].Faults.ErrorRate = 1.5 }), "within 0..1"},
		{"rates sum above 1", base(func(c *Config) {
			c.Deployments[0].Faults = Faults{ErrorRate: 0.6, TimeoutRate: 0.6}
		}), "sum to at most 1"},
		{"negative latency", base(func(c *Config) { c.Deployments[0].Latency.TTFT = -1 }), "latency"},
		{"negative window", base(func(c *Config) { c.Window = -1 }), "window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				if _, err := New(tt.cfg, nil); err != nil {
					t.Fatalf("New: got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate: got %v, want an error containing %q", err, tt.wantErr)
			}
			if _, err := New(tt.cfg, nil); err == nil {
				t.Fatalf("New: got nil error for an invalid config")
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, doc string
		wantErr   bool
	}{
		{"yaml", `
apiKey: k
window: 2s
deployments:
  - name: gpt-4o-mini
    tpm: 1000
    rpm: 10
    latency: {ttft: 150ms, tokensPerSecond: 200, embeddingLatency: 20ms}
    faults: {errorRate: 0.1, seed: 7}
`, false},
		{"json", `{"apiKey":"k","window":"2s","deployments":[{"name":"gpt-4o-mini","tpm":1000,"rpm":10,
"latency":{"ttft":"150ms","tokensPerSecond":200,"embeddingLatency":"20ms"},"faults":{"errorRate":0.1,"seed":7}}]}`, false},
		{"doc example", `
apiKey: ""
region: swedencentral
window: 2s
deployments:
  - name: gpt-4o-mini
    model: gpt-4o-mini
    tpm: 450000
    rpm: 2700
    latency: {ttft: 150ms, tokensPerSecond: 200}
    faults: {errorRate: 0.01, timeoutRate: 0, cutStreamRate: 0.01, seed: 7}
  - name: gpt-4o-mini-ptu
    model: gpt-4o-mini
    provisioned: true
    ptuCapacityTPM: 300000
  - name: text-embedding-3-small
    embeddingDims: 256
    latency: {embeddingLatency: 40ms}
`, false},
		{"unknown field", "deployments: [{name: a, tmp: 5}]", true},
		{"bad duration", "window: soon\ndeployments: [{name: a}]", true},
		{"invalid config", "deployments: []", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.doc))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseConfig: got nil error, want one")
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			d := cfg.Deployments[0]
			if got, want := cfg.Window.D(), 2*time.Second; got != want {
				t.Errorf("window: got %v, want %v", got, want)
			}
			if got, want := d.Latency.TTFT.D(), 150*time.Millisecond; got != want {
				t.Errorf("ttft: got %v, want %v", got, want)
			}
			if got, want := d.Model, "gpt-4o-mini"; got != want {
				t.Errorf("model default: got %q, want %q", got, want)
			}
			if got, want := d.EmbeddingDims, DefaultEmbeddingDims; got != want {
				t.Errorf("embeddingDims default: got %d, want %d", got, want)
			}
			if got, want := cfg.Region, DefaultRegion; got != want {
				t.Errorf("region default: got %q, want %q", got, want)
			}
			if got, want := d.Faults.Seed, uint64(7); got != want {
				t.Errorf("seed: got %d, want %d", got, want)
			}
		})
	}
}

func TestDefaultConfigRoundTrip(t *testing.T) {
	want, err := DefaultConfig().normalize()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseConfig(b)
	if err != nil {
		t.Fatalf("ParseConfig(%s): %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\ngot  %+v\nwant %+v", got, want)
	}
	var names []string
	for _, d := range got.Deployments {
		names = append(names, d.Name)
	}
	if got, want := strings.Join(names, ","), "gpt-4o-mini,gpt-4o-mini-ptu,o4-mini,text-embedding-3-small"; got != want {
		t.Errorf("default deployments: got %s, want %s", got, want)
	}
}

func TestSecretRedacted(t *testing.T) {
	cfg := Config{APIKey: "sekret"}
	for _, s := range []string{cfg.APIKey.String(), cfg.APIKey.GoString(), cfg.APIKey.LogValue().String()} {
		if strings.Contains(s, "sekret") {
			t.Errorf("secret leaked: %q", s)
		}
	}
}
