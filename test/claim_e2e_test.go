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
			// The drainer stores the outcome, completes the message, then
			// deletes the body (jobs.Drainer.finish, release): a client can
			// see "succeeded" before the delete. Wait for it; the bound only
			// turns a body that is never deleted into a failure.
			deadline := time.Now().Add(30 * time.Second)
			for err := gone(t, s, j.ID); err != nil; err = gone(t, s, j.ID) {
				if time.Now().After(deadline) {
					t.Fatalf("30 s after the job finished: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestLargeJobBlobFailureLosesNothing: when the body cannot be stored, the
// client gets a clear 503 in the OpenAI error shape, the job is recorded as
// failed, and no message is queued (so nothing runs later either). The
// embedded blob container is replaced by a plain file, which makes every
// write fail even for root.
func TestLargeJobBlobFailureLosesNothing(t *testing.T) {
	s := startStack(t, stackOptions{maxBodyBytes: 4 << 20, extraTop: "timers: { drain: 200ms }"})
	container := filepath.Join(s.Dir, "data", "blobs", "job-bodies")
	if err := os.RemoveAll(container); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(container, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"model": "gpt-4o-mini", "max_tokens": 16,
		"messages": []map[string]string{{"role": "user", "content": strings.Repeat("x", 300<<10)}}})
	code, _, body := jcall(t, http.MethodPost, s.URL+"/openai/v1/chat/completions", s.Key, string(b), async)
	var e struct {
		Error struct{ Code, Message, Type string } `json:"error"`
	}
	if code != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil || e.Error.Code != "job_body_store_unavailable" || e.Error.Message == "" {
		t.Fatalf("submit with a broken blob store: %d %s, want 503 job_body_store_unavailable", code, body)
	}
	// A small job still works: only large bodies need blob storage.
	ok := submitJob(t, s.URL, s.Key, chatBody("still fine"), nil)
	if got := waitTerminal(t, s.URL, s.Key, []string{ok.ID}, 15*time.Second)[ok.ID]; got.Status != "succeeded" {
		t.Errorf("small job beside the broken blob store: %s (%s)", got.Status, got.Error)
	}
	jobs := listJobs(t, s.URL, s.Key, "")
	var failed, succeeded int
	for _, j := range jobs {
		switch j.Status {
		case "failed":
			failed++
			if !strings.Contains(j.Error, "store the request body") {
				t.Errorf("failed job error %q, want it to say the body could not be stored", j.Error)
			}
		case "succeeded":
			succeeded++
		default:
			t.Errorf("job %s is %s: the failed submission must not leave a job to run", j.ID, j.Status)
		}
	}
	if failed != 1 || succeeded != 1 {
		t.Errorf("jobs %+v, want one failed (the large one) and one succeeded", jobs)
	}
}
