package test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

// TestResponsesAPIWithOfficialSDK drives the Responses API calls beyond
// create through the official openai-go client, in the OpenAI and Azure
// styles: create on /openai/responses?api-version= (Azure), GET, input
// items, cancel and DELETE of a stored response, each routed to the
// backend that created it (two simulators: only the creator knows the id),
// and GET /models/{id}.
func TestResponsesAPIWithOfficialSDK(t *testing.T) {
	dir := t.TempDir()
	simCfg := filepath.Join(dir, "sim-b.yaml")
	if err := os.WriteFile(simCfg, []byte(fastSim), 0o600); err != nil {
		t.Fatal(err)
	}
	simB := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	p := start(t, dir, nil, "sim", "--listen", strings.TrimPrefix(simB, "http://"), "--config", simCfg)
	waitHTTP(t, p, simB+"/sim/usage")
	s := startStack(t, stackOptions{
		extraBackends: fmt.Sprintf(`  - { name: sim-b, url: "%s", region: westeurope, auth: { none: true } }`, simB),
		extraModels: `  conv:
    targets:
      - { backend: sim-paygo, deployment: gpt-4o-mini }
      - { backend: sim-b, deployment: gpt-4o-mini }`,
		extraKeys: [][]string{{"--team", "research", "--app", "other"}},
	})
	ctx := context.Background()
	other := openai.NewClient(option.WithBaseURL(s.URL+"/openai/v1/"), option.WithAPIKey(s.ExtraKeys[0]), option.WithMaxRetries(0))
	for name, c := range clients(s) {
		if name == "v1-short" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			// Responses made under different affinity keys land on both backends.
			byBackend := map[string]string{}
			for i := 0; i < 40 && len(byBackend) < 2; i++ {
				var raw *http.Response
				r, err := c.Responses.New(ctx, responses.ResponseNewParams{
					Model: "conv",
					Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(fmt.Sprintf("remember %d", i))},
				}, option.WithHeader("x-gateway-affinity-key", fmt.Sprintf("%s-%d", name, i)), option.WithResponseInto(&raw))
				if err != nil {
					t.Fatalf("create: %v", err)
				}
				if name == "azure" && raw.Request.URL.Path != "/openai/responses" {
					t.Fatalf("the azure client posted to %s", raw.Request.URL.Path)
				}
				byBackend[raw.Header.Get("X-Gateway-Backend")] = r.ID
			}
			if len(byBackend) != 2 {
				t.Fatalf("responses landed on %v only", byBackend)
			}
			for backend, id := range byBackend {
				var raw *http.Response
				got, err := c.Responses.Get(ctx, id, responses.ResponseGetParams{}, option.WithResponseInto(&raw))
				if err != nil {
					t.Fatalf("get %s (made on %s): %v", id, backend, err)
				}
				if got.ID != id || got.Status != "completed" || raw.Header.Get("X-Gateway-Backend") != backend {
					t.Errorf("get %s: id %s status %s via %s, want it from %s", id, got.ID, got.Status, raw.Header.Get("X-Gateway-Backend"), backend)
				}
				// Another caller cannot use it, even knowing the id.
				var otherErr *openai.Error
				if _, err := other.Responses.New(ctx, responses.ResponseNewParams{Model: "conv", PreviousResponseID: openai.String(id),
					Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("continue someone else's")}}); !errors.As(err, &otherErr) || otherErr.StatusCode != http.StatusBadRequest || otherErr.Code != "previous_response_not_found" {
					t.Errorf("continue %s with another key: %v, want 400 previous_response_not_found", id, err)
				}
				if _, err := other.Responses.Get(ctx, id, responses.ResponseGetParams{}); !errors.As(err, &otherErr) || otherErr.StatusCode != http.StatusNotFound {
					t.Errorf("get %s with another key: %v, want 404", id, err)
				}
				items, err := c.Responses.InputItems.List(ctx, id, responses.InputItemListParams{})
				if err != nil {
					t.Fatalf("input items of %s: %v", id, err)
				}
				if len(items.Data) != 1 || !strings.Contains(items.Data[0].RawJSON(), `"remember `) || items.Data[0].Role != "user" {
					t.Errorf("input items of %s: %+v", id, items.Data)
				}
				// A finished response cannot be cancelled: the backend's 400
				// comes through (a wrong backend would say 404).
				var apiErr *openai.Error
				if _, err := c.Responses.Cancel(ctx, id); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest {
					t.Errorf("cancel %s: %v, want the backend's 400", id, err)
				}
				if err := c.Responses.Delete(ctx, id); err != nil {
					t.Fatalf("delete %s: %v", id, err)
				}
				if _, err := c.Responses.Get(ctx, id, responses.ResponseGetParams{}); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
					t.Errorf("get after delete: %v, want 404", err)
				}
			}
			var apiErr *openai.Error
			if _, err := c.Responses.Get(ctx, "resp_unknown", responses.ResponseGetParams{}); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Code != "response_not_found" {
				t.Errorf("get of an unknown id: %v, want 404 response_not_found", err)
			}

			m, err := c.Models.Get(ctx, "conv")
			if err != nil || m.ID != "conv" || m.Object != "model" {
				t.Errorf("models get: %+v %v", m, err)
			}
			if _, err := c.Models.Get(ctx, "nope"); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
				t.Errorf("models get of an unknown alias: %v, want 404", err)
			}
		})
	}
}
