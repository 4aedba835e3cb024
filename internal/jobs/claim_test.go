package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/blob"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/queue"
	"github.com/foundry-gateway/gateway/internal/queue/claim"
)

// brokenBlobs fails every call, as an unreachable storage account would.
type brokenBlobs struct{}

func (brokenBlobs) Put(context.Context, string, []byte) error {
	return errors.New("storage unreachable")
}
func (brokenBlobs) Get(context.Context, string) ([]byte, error) {
	return nil, errors.New("storage unreachable")
}
func (brokenBlobs) Delete(context.Context, string) error { return errors.New("storage unreachable") }

// withClaims gives the fixture's drainer a claim check over a blob
// directory and returns the sender Submit must use.
func (f *fixture) withClaims(t *testing.T) (*blob.Dir, claim.Sender) {
	t.Helper()
	d, err := blob.OpenDir(t.TempDir(), "job-bodies")
	if err != nil {
		t.Fatal(err)
	}
	cc := claim.New(d, claim.DefaultThreshold, func(err error) bool { return errors.Is(err, blob.ErrNotFound) })
	f.d.Claims = cc
	return d, claim.Sender{Queue: f.q, Check: cc}
}

// bigChat is a chat request of about size bytes.
func bigChat(t *testing.T, size int) (openai.Request, []byte) {
	t.Helper()
	body := []byte(fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"%s"}]}`, strings.Repeat("a", size)))
	req, err := openai.Parse(openai.OpChat, openai.StyleV1, "", "", body)
	if err != nil {
		t.Fatal(err)
	}
	return req, body
}

func TestLargeJobRunsThroughClaimCheckAndDeletesItsBlob(t *testing.T) {
	f := newFixture(t)
	blobs, sender := f.withClaims(t)
	req, body := bigChat(t, 1<<20)
	j, err := Submit(t.Context(), f.st, sender, Submission{KeyID: "k1", Team: "t", App: "a", Req: req, Body: body})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if _, err := blobs.Get(t.Context(), j.ID); err != nil {
		t.Fatalf("after Submit the body blob should exist: %v", err)
	}
	if st, err := f.d.Drain(t.Context()); err != nil || st.Succeeded != 1 {
		t.Fatalf("round %v, %v", st, err)
	}
	if got := f.get(t, j.ID); got.Status != StatusSucceeded {
		t.Fatalf("job %s (%s), want succeeded", got.Status, got.Error)
	}
	if n := f.be.lastBody.Load(); n < int64(len(body)) {
		t.Errorf("backend got a %d-byte body, want the %d bytes submitted", n, len(body))
	}
	if _, err := blobs.Get(t.Context(), j.ID); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("after the job finished: got %v, want the blob deleted", err)
	}
}

func TestSmallJobStaysInline(t *testing.T) {
	f := newFixture(t)
	blobs, sender := f.withClaims(t)
	req, body := bigChat(t, 1000)
	j, err := Submit(t.Context(), f.st, sender, Submission{KeyID: "k1", Team: "t", App: "a", Req: req, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.Get(t.Context(), j.ID); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("a small body went to blob storage: %v", err)
	}
	if st, err := f.d.Drain(t.Context()); err != nil || st.Succeeded != 1 {
		t.Fatalf("round %v, %v", st, err)
	}
}

func TestLargeJobBlobWriteFailureLosesNothing(t *testing.T) {
	f := newFixture(t)
	cc := claim.New(brokenBlobs{}, 0, nil)
	req, body := bigChat(t, 300<<10)
	_, err := Submit(t.Context(), f.st, claim.Sender{Queue: f.q, Check: cc}, Submission{KeyID: "k1", Team: "t", App: "a", Req: req, Body: body})
	var he *httperr.Error
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable || he.Code != "job_body_store_unavailable" {
		t.Fatalf("Submit: got %v, want a 503 job_body_store_unavailable", err)
	}
	if msgs, _ := f.q.Receive(t.Context(), 10, 0); len(msgs) != 0 {
		t.Errorf("%d messages queued for a job whose body was not stored, want none", len(msgs))
	}
	js, err := f.st.List(t.Context(), "k1", "", 0)
	if err != nil || len(js) != 1 || js[0].Status != StatusFailed {
		t.Fatalf("jobs %v, %v: want the one job marked failed", js, err)
	}
}

// failingQueue refuses every message.
type failingQueue struct{}

func (failingQueue) Send(context.Context, queue.Outgoing) error {
	return errors.New("namespace unreachable")
}

func TestLargeJobQueueFailureDiscardsTheBlob(t *testing.T) {
	f := newFixture(t)
	blobs, sender := f.withClaims(t)
	sender.Queue = failingQueue{}
	req, body := bigChat(t, 300<<10)
	_, err := Submit(t.Context(), f.st, sender, Submission{KeyID: "k1", Team: "t", App: "a", Req: req, Body: body})
	var he *httperr.Error
	if !errors.As(err, &he) || he.Code != "queue_unavailable" {
		t.Fatalf("Submit: got %v, want queue_unavailable", err)
	}
	js, _ := f.st.List(t.Context(), "k1", "", 0)
	if len(js) != 1 {
		t.Fatalf("jobs %v", js)
	}
	if _, err := blobs.Get(t.Context(), js[0].ID); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("blob of a job that was never queued: got %v, want it deleted", err)
	}
}

func TestFinishedLargeJobsDeleteTheirBlobs(t *testing.T) {
	tests := []struct {
		name   string
		script []int
		cancel bool
		rounds int
		want   Status
	}{
		{"cancelled", nil, true, 1, StatusCancelled},
		{"refused by the backend", []int{400}, false, 1, StatusFailed},
		{"dead-lettered after max attempts", []int{500, 500, 500}, false, 3, StatusFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			blobs, sender := f.withClaims(t)
			f.be.script(tt.script...)
			req, body := bigChat(t, 300<<10)
			j, err := Submit(t.Context(), f.st, sender, Submission{KeyID: "k1", Team: "t", App: "a", Req: req, Body: body})
			if err != nil {
				t.Fatal(err)
			}
			if tt.cancel {
				if _, err := f.st.Cancel(t.Context(), "k1", j.ID); err != nil {
					t.Fatal(err)
				}
			}
			for range tt.rounds {
				if _, err := f.d.Drain(t.Context()); err != nil {
					t.Fatal(err)
				}
				f.clock.Advance(10 * time.Second)
			}
			if got := f.get(t, j.ID); got.Status != tt.want {
				t.Fatalf("job %s (%s), want %s", got.Status, got.Error, tt.want)
			}
			if _, err := blobs.Get(t.Context(), j.ID); !errors.Is(err, blob.ErrNotFound) {
				t.Errorf("blob after the job finished: got %v, want deleted", err)
			}
		})
	}
}

func TestLargeJobWithMissingBlobFails(t *testing.T) {
	f := newFixture(t)
	blobs, sender := f.withClaims(t)
	req, body := bigChat(t, 300<<10)
	j, err := Submit(t.Context(), f.st, sender, Submission{KeyID: "k1", Team: "t", App: "a", Req: req, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if err := blobs.Delete(t.Context(), j.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.d.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := f.get(t, j.ID)
	if got.Status != StatusFailed || !strings.Contains(got.Error, "missing") || f.be.calls.Load() != 0 {
		t.Errorf("job %s (%q) after %d backend calls; want failed for the missing body, no backend call", got.Status, got.Error, f.be.calls.Load())
	}
}

func TestLargeJobWaitsWhileBlobStorageIsDown(t *testing.T) {
	f := newFixture(t)
	_, sender := f.withClaims(t)
	req, body := bigChat(t, 300<<10)
	j, err := Submit(t.Context(), f.st, sender, Submission{KeyID: "k1", Team: "t", App: "a", Req: req, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	f.d.Claims = claim.New(brokenBlobs{}, 0, func(err error) bool { return errors.Is(err, blob.ErrNotFound) })
	if _, err := f.d.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, j.ID); got.Status != StatusQueued || got.Attempts != 0 {
		t.Errorf("job %s after %d attempts, want still queued with no attempt counted", got.Status, got.Attempts)
	}
}
