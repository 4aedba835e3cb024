package test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/blob"
)

// TestLargeJobThroughClaimCheck submits a 1 MiB async request through the
// real binary on the embedded queue, which refuses messages above 256 KB
// as Service Bus Standard does: it can only complete through the claim
// check (body in blob storage, reference in the message). Once the job is
// finished its body blob is gone. It runs with the embedded blob store and
// with Azure Blob Storage (Azurite's blob service, the azure-blob code path
// of serve).
func TestLargeJobThroughClaimCheck(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) (top string, env []string, gone func(t *testing.T, s *stack, id string) error)
	}{
		{"embedded blobs", func(t *testing.T) (string, []string, func(*testing.T, *stack, string) error) {
			return "", nil, func(t *testing.T, s *stack, id string) error {
				_, err := os.Stat(filepath.Join(s.Dir, "data", "blobs", "job-bodies", id))
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return errors.New("the body file is still there")
			}
		}},
		{"Azure blobs (Azurite)", func(t *testing.T) (string, []string, func(*testing.T, *stack, string) error) {
			cs := azurite.StartService(t, azurite.Blob).ConnectionString()
			return "blob: { kind: azure-blob, connection: GatewayBlobs }", []string{"GatewayBlobs=" + cs},
				func(t *testing.T, s *stack, id string) error {
					a, err := blob.NewAzure(blob.AzureOptions{ConnectionString: cs, Container: "job-bodies"})
					if err != nil {
						return err
					}
					if _, err := a.Get(t.Context(), id); !errors.Is(err, blob.ErrNotFound) {
						return errors.New("the body blob is still there")
					}
					return nil
				}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top, env, gone := tt.setup(t)
			s := startStack(t, stackOptions{
				maxBodyBytes: 4 << 20,
				extraTop:     "timers: { drain: 200ms }\n" + top,
				env:          env,
			})
			words := strings.Repeat("the gateway stores large job bodies in blob storage ", (1<<20)/52+1)
			b, _ := json.Marshal(map[string]any{"model": "gpt-4o-mini", "max_tokens": 16,
				"messages": []map[string]string{{"role": "user", "content": words}}})
			if len(b) < 1<<20 {
				t.Fatalf("request is %d bytes, want at least 1 MiB", len(b))
			}
			// Without the claim check the 202 could not happen: the embedded
			// queue refuses the 1 MiB message (queue.MaxMessageBytes).
			j := submitJob(t, s.URL, s.Key, string(b), nil)
			got := waitTerminal(t, s.URL, s.Key, []string{j.ID}, 30*time.Second)[j.ID]
			if got.Status != "succeeded" || got.ResultStatus != http.StatusOK {
				t.Fatalf("job %s (result %d, error %q), want succeeded with 200", got.Status, got.ResultStatus, got.Error)
			}
			var res struct {
				Usage struct {
					PromptTokens int `json:"prompt_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(got.Result, &res); err != nil || res.Usage.PromptTokens < 100_000 {
				t.Errorf("result usage %+v (%v): want the backend to have seen the whole 1 MiB prompt", res.Usage, err)
			}
			if err := gone(t, s, j.ID); err != nil {
				t.Errorf("after the job finished: %v", err)
			}
		})
	}
}
