package blob_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/blob"
)

var az = azurite.Shared{Service: azurite.Blob}

func TestMain(m *testing.M) { os.Exit(az.Run(m)) }

// store is what the contract exercises: both implementations have it.
type store interface {
	Put(ctx context.Context, name string, data []byte) error
	Get(ctx context.Context, name string) ([]byte, error)
	Delete(ctx context.Context, name string) error
	AppendAt(ctx context.Context, name string, data []byte, at int64) (int, error)
	AppendSize(ctx context.Context, name string) (int64, int, error)
	List(ctx context.Context, prefix string) ([]string, error)
}

// TestContract runs the same cases against the embedded directory store and
// Azurite's blob service, so code that works on one works on the other.
func TestContract(t *testing.T) {
	impls := []struct {
		name string
		open func(t *testing.T, container string) store
	}{
		{"Dir", func(t *testing.T, container string) store {
			d, err := blob.OpenDir(t.TempDir(), container)
			if err != nil {
				t.Fatalf("OpenDir: %v", err)
			}
			return d
		}},
		{"Azurite", func(t *testing.T, container string) store {
			a, err := blob.NewAzure(blob.AzureOptions{ConnectionString: az.Start(t).ConnectionString(), Container: container})
			if err != nil {
				t.Fatalf("NewAzure: %v", err)
			}
			for range 2 { // the second call meets an existing container
				if err := a.EnsureContainer(t.Context()); err != nil {
					t.Fatalf("EnsureContainer: %v", err)
				}
			}
			return a
		}},
	}
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) {
			for i, c := range contractCases {
				t.Run(c.name, func(t *testing.T) {
					c.fn(t, impl.open(t, fmt.Sprintf("contract-%02d", i)))
				})
			}
		})
	}
}

var contractCases = []struct {
	name string
	fn   func(t *testing.T, s store)
}{
	{"PutGetDelete", func(t *testing.T, s store) {
		ctx := t.Context()
		put(t, s, "job_1", []byte(`{"model":"m"}`))
		if got := get(t, s, "job_1"); string(got) != `{"model":"m"}` {
			t.Errorf("Get: got %q", got)
		}
		if err := s.Delete(ctx, "job_1"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := s.Get(ctx, "job_1"); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Get after Delete: got %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "job_1"); err != nil {
			t.Errorf("second Delete: got %v, want nil (idempotent)", err)
		}
	}},
	{"Missing", func(t *testing.T, s store) {
		if _, err := s.Get(t.Context(), "never-written"); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Get: got %v, want ErrNotFound", err)
		}
		if err := s.Delete(t.Context(), "never-written"); err != nil {
			t.Errorf("Delete: got %v, want nil", err)
		}
	}},
	{"Large", func(t *testing.T, s store) {
		// Above the 1 MiB job of the queue contract and above UploadBuffer's
		// single-request size, so the Azure upload goes in blocks. (16 MiB,
		// maxBodyBytes, took 10 s under -race on Azurite for no more cover.)
		data := make([]byte, 2<<20+123)
		_, _ = rand.Read(data)
		put(t, s, "large.bin", data)
		if got := get(t, s, "large.bin"); !bytes.Equal(got, data) {
			t.Errorf("Get: got %d bytes, want the %d bytes put", len(got), len(data))
		}
	}},
	{"EmptyAndOverwrite", func(t *testing.T, s store) {
		put(t, s, "x", nil)
		if got := get(t, s, "x"); len(got) != 0 {
			t.Errorf("empty blob: got %q", got)
		}
		put(t, s, "x", []byte("second"))
		if got := get(t, s, "x"); string(got) != "second" {
			t.Errorf("after overwrite: got %q, want second", got)
		}
	}},
	{"Nested", func(t *testing.T, s store) {
		put(t, s, "2026/12/05/a.json", []byte("a"))
		put(t, s, "2026/12/05/b.json", []byte("b"))
		if got := get(t, s, "2026/12/05/b.json"); string(got) != "b" {
			t.Errorf("got %q, want b", got)
		}
	}},
	{"Append", func(t *testing.T, s store) {
		ctx := t.Context()
		if _, _, err := s.AppendSize(ctx, "2026/12/05/t/a.jsonl"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("AppendSize of a missing blob: got %v, want ErrNotFound", err)
		}
		for _, b := range []struct {
			data string
			at   int64
		}{{"one\n", 0}, {"two\n", 4}} {
			if _, err := s.AppendAt(ctx, "2026/12/05/t/a.jsonl", []byte(b.data), b.at); err != nil {
				t.Fatalf("AppendAt %q at %d: %v", b.data, b.at, err)
			}
		}
		// A retry of an append that landed: refused, and the size says so.
		_, err := s.AppendAt(ctx, "2026/12/05/t/a.jsonl", []byte("two\n"), 4)
		var pe *blob.PositionError
		if !errors.As(err, &pe) || pe.Size != 8 {
			t.Fatalf("second AppendAt at 4: got %v, want a PositionError with size 8", err)
		}
		if _, err := s.AppendAt(ctx, "2026/12/05/t/b.jsonl", []byte("x"), 3); !errors.Is(err, blob.ErrPosition) {
			t.Fatalf("AppendAt a missing blob at 3: got %v, want ErrPosition", err)
		}
		if size, _, err := s.AppendSize(ctx, "2026/12/05/t/a.jsonl"); err != nil || size != 8 {
			t.Fatalf("AppendSize: %d %v, want 8", size, err)
		}
		if got := get(t, s, "2026/12/05/t/a.jsonl"); string(got) != "one\ntwo\n" {
			t.Errorf("Get: got %q", got)
		}
		put(t, s, "2026/12/06/t/c.jsonl", []byte("c"))
		names, err := s.List(ctx, "2026/12/05/")
		if err != nil || len(names) != 1 || names[0] != "2026/12/05/t/a.jsonl" {
			t.Errorf("List 2026/12/05/: got %v %v, want [2026/12/05/t/a.jsonl]", names, err)
		}
		if names, err := s.List(ctx, "2027/"); err != nil || len(names) != 0 {
			t.Errorf("List of an empty prefix: got %v %v", names, err)
		}
		if _, err := s.AppendAt(ctx, "big", make([]byte, blob.MaxAppendBlock+1), 0); !errors.Is(err, blob.ErrInvalid) {
			t.Errorf("AppendAt above MaxAppendBlock: got %v, want ErrInvalid", err)
		}
	}},
	{"InvalidNames", func(t *testing.T, s store) {
		for _, name := range []string{"", "../escape", "a//b", "/abs", "a/./b", "sp ace", "a\\b", string(make([]byte, blob.MaxNameLength+1))} {
			if err := s.Put(t.Context(), name, []byte("x")); !errors.Is(err, blob.ErrInvalid) {
				t.Errorf("Put(%q): got %v, want ErrInvalid", name, err)
			}
			if _, err := s.Get(t.Context(), name); !errors.Is(err, blob.ErrInvalid) {
				t.Errorf("Get(%q): got %v, want ErrInvalid", name, err)
			}
		}
	}},
	{"ConcurrentPutsLeaveOneWholeVersion", func(t *testing.T, s store) {
		versions := make([][]byte, 4)
		for i := range versions {
			versions[i] = bytes.Repeat([]byte{byte('a' + i)}, 256<<10)
		}
		var wg sync.WaitGroup
		for _, v := range versions {
			wg.Go(func() {
				if err := s.Put(t.Context(), "race", v); err != nil {
					t.Errorf("Put: %v", err)
				}
			})
		}
		wg.Wait()
		got := get(t, s, "race")
		for _, v := range versions {
			if bytes.Equal(got, v) {
				return
			}
		}
		t.Errorf("got %d bytes that match no single Put", len(got))
	}},
	{"CanceledContext", func(t *testing.T, s store) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := s.Put(ctx, "c", []byte("x")); err == nil {
			t.Errorf("Put with a canceled context: got nil error")
		}
	}},
}

func put(t *testing.T, s store, name string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), name, data); err != nil {
		t.Fatalf("Put(%s): %v", name, err)
	}
}

func get(t *testing.T, s store, name string) []byte {
	t.Helper()
	b, err := s.Get(t.Context(), name)
	if err != nil {
		t.Fatalf("Get(%s): %v", name, err)
	}
	return b
}

func TestDirKeepsBlobsAcrossReopenAndLeavesNoTempFiles(t *testing.T) {
	root := t.TempDir()
	d, err := blob.OpenDir(root, "bodies")
	if err != nil {
		t.Fatal(err)
	}
	put(t, d, "job_a", []byte("kept"))
	d2, err := blob.OpenDir(root, "bodies")
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, d2, "job_a"); string(got) != "kept" {
		t.Errorf("after reopen: got %q", got)
	}
	entries, err := os.ReadDir(filepath.Join(root, "bodies"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "job_a" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only job_a (no temporary files)", names)
	}
}

func TestContainerNames(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"job-bodies", true}, {"abc", true}, {"ab", false}, {"Upper", false}, {"-lead", false}, {"double--hyphen", false}, {"under_score", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := blob.OpenDir(t.TempDir(), tt.name)
			if got := err == nil; got != tt.ok {
				t.Errorf("OpenDir(%q): got error %v, want ok=%v", tt.name, err, tt.ok)
			}
			if err != nil && !errors.Is(err, blob.ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestAzureNeedsAConnection(t *testing.T) {
	if _, err := blob.NewAzure(blob.AzureOptions{Container: "job-bodies"}); err == nil {
		t.Error("NewAzure without connection string or service URL: got nil error")
	}
}
