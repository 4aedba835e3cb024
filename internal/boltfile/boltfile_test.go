package boltfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// newFile writes a small valid bbolt file with a bucket and some rows.
func newFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gw.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("t"))
		if err != nil {
			return err
		}
		for i := 0; i < 2000; i++ {
			if err := b.Put([]byte(strings.Repeat("k", 20)+string(rune('a'+i%26))+string(rune(i))), make([]byte, 100)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOpenDamaged (issue #16 item 6): a damaged file gives an error naming
// it and what to do, never a panic.
func TestOpenDamaged(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"garbage", func(t *testing.T, path string) {
			_ = os.WriteFile(path, []byte(strings.Repeat("not a database ", 1000)), 0o600)
		}},
		{"meta pages zeroed", func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			clear(b[:8192])
			_ = os.WriteFile(path, b, 0o600)
		}},
		{"truncated", func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			_ = os.Truncate(path, fi.Size()/3)
		}},
		{"data pages scribbled", func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			for i := 4 * 4096; i < len(b); i++ {
				b[i] = byte(i * 7)
			}
			_ = os.WriteFile(path, b, 0o600)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := newFile(t)
			tt.damage(t, path)
			db, err := Open(path, "embedded store", time.Second)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded on a damaged file")
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "Move the file aside") {
				t.Errorf("error %q: want ErrDamaged naming %s and what to do", err, path)
			}
		})
	}
}

// TestOpenLocked (issue #16 item 7): a second opener is told who holds
// the file, not a bare "timeout".
func TestOpenLocked(t *testing.T) {
	path := newFile(t)
	db, err := Open(path, "embedded store", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = Open(path, "embedded store", 100*time.Millisecond)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another gateway") {
		t.Errorf("error %v: want ErrLocked naming the file and the likely holder", err)
	}
}
