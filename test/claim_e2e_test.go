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
)

// TestLargeJobThroughClaimCheck submits a 1 MiB async request through the
// real binary on the embedded queue, which refuses messages above 256 KB
// as Service Bus Standard does: it can only complete through the claim
// check (body in blob storage, reference in the message). Once the job is
// finished its body blob is gone.
func TestLargeJobThroughClaimCheck(t *testing.T) {
	s := startStack(t, stackOptions{
		maxBodyBytes: 4 << 20,
		extraTop:     "timers: { drain: 200ms }",
	})
	words := strings.Repeat("the gateway stores large job bodies in blob storage ", (1<<20)/52+1)
	b, _ := json.Marshal(map[string]any{"model": "gpt-4o-mini", "max_tokens": 16,
		"messages": []map[string]string{{"role": "user", "content": words}}})
	if len(b) < 1<<20 {
		t.Fatalf("request is %d bytes, want at least 1 MiB", len(b))
	}
	j := submitJob(t, s.URL, s.Key, string(b), nil)
	// Without the claim check the 202 above could not happen: the
	// embedded queue refuses the 1 MiB message (queue.MaxMessageBytes).
	blobDir := filepath.Join(s.Dir, "data", "blobs", "job-bodies")
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
	if _, err := os.Stat(filepath.Join(blobDir, j.ID)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("body blob after the job finished: %v, want it deleted", err)
	}
}
