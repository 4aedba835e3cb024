package claim_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/foundry-gateway/gateway/internal/blob"
	"github.com/foundry-gateway/gateway/internal/queue"
	"github.com/foundry-gateway/gateway/internal/queue/claim"
)

// failing is a blob store whose every call fails.
type failing struct{ err error }

func (f failing) Put(context.Context, string, []byte) error   { return f.err }
func (f failing) Get(context.Context, string) ([]byte, error) { return nil, f.err }
func (f failing) Delete(context.Context, string) error        { return f.err }

func notFound(err error) bool { return errors.Is(err, blob.ErrNotFound) }

func newCheck(t *testing.T, threshold int) (*claim.Check, *blob.Dir) {
	t.Helper()
	d, err := blob.OpenDir(t.TempDir(), "job-bodies")
	if err != nil {
		t.Fatal(err)
	}
	return claim.New(d, threshold, notFound), d
}

func TestWrapThreshold(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		claimed bool
	}{
		{"AtThreshold", 100, false},
		{"AboveThreshold", 101, true},
		{"Empty", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc, d := newCheck(t, 100)
			o := queue.Outgoing{ID: "job_1", Body: bytes.Repeat([]byte("x"), tt.size), Properties: map[string]string{"k": "v"}}
			w, err := cc.Wrap(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			m := &queue.Message{ID: w.ID, Body: w.Body, Properties: w.Properties}
			if claim.Claimed(m) != tt.claimed {
				t.Fatalf("claimed: got %v, want %v (properties %v)", claim.Claimed(m), tt.claimed, w.Properties)
			}
			if tt.claimed && (len(w.Body) != 0 || w.Properties["k"] != "v") {
				t.Errorf("wrapped: body %d bytes, properties %v; want empty body and the original properties kept", len(w.Body), w.Properties)
			}
			if o.Properties[claim.Property] != "" {
				t.Error("Wrap changed the caller's properties map")
			}
			got, err := cc.Body(t.Context(), m)
			if err != nil || !bytes.Equal(got, o.Body) {
				t.Fatalf("Body: got %d bytes, %v; want the %d bytes sent", len(got), err, len(o.Body))
			}
			if _, err := d.Get(t.Context(), "job_1"); tt.claimed != (err == nil) {
				t.Errorf("blob present: got err %v, want present=%v", err, tt.claimed)
			}
		})
	}
}

func TestDiscardAndRelease(t *testing.T) {
	cc, d := newCheck(t, 10)
	w, err := cc.Wrap(t.Context(), queue.Outgoing{ID: "job_2", Body: make([]byte, 50)})
	if err != nil {
		t.Fatal(err)
	}
	if err := cc.Discard(t.Context(), w); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get(t.Context(), "job_2"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("after Discard: got %v, want the blob gone", err)
	}
	m := &queue.Message{ID: "job_2", Properties: w.Properties}
	if _, err := cc.Body(t.Context(), m); !errors.Is(err, claim.ErrMissing) {
		t.Errorf("Body of a discarded claim: got %v, want ErrMissing", err)
	}
	if err := cc.Release(t.Context(), m); err != nil {
		t.Errorf("Release of a missing blob: got %v, want nil", err)
	}
}

func TestFailuresAreNotMissing(t *testing.T) {
	boom := errors.New("storage unreachable")
	cc := claim.New(failing{boom}, 10, notFound)
	if _, err := cc.Wrap(t.Context(), queue.Outgoing{ID: "job_3", Body: make([]byte, 50)}); !errors.Is(err, boom) {
		t.Errorf("Wrap: got %v, want the store's error", err)
	}
	m := &queue.Message{ID: "job_3", Properties: map[string]string{claim.Property: "job_3"}}
	if _, err := cc.Body(t.Context(), m); !errors.Is(err, boom) || errors.Is(err, claim.ErrMissing) {
		t.Errorf("Body: got %v, want the store's error, not ErrMissing (a transient failure must not fail the job)", err)
	}
}

func TestNilCheck(t *testing.T) {
	var cc *claim.Check
	o := queue.Outgoing{ID: "job_4", Body: make([]byte, 300<<10)}
	if w, err := cc.Wrap(t.Context(), o); err != nil || len(w.Body) != len(o.Body) {
		t.Errorf("nil Wrap: got %d bytes, %v; want the body inline", len(w.Body), err)
	}
	m := &queue.Message{ID: "job_4", Properties: map[string]string{claim.Property: "job_4"}}
	if _, err := cc.Body(t.Context(), m); err == nil {
		t.Error("nil Body of a claimed message: got nil error")
	}
}
