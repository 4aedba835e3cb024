package boltfile

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
)

// mappedRSS is the resident size of this process's maps of path, from
// /proc/self/smaps.
func mappedRSS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fs := strings.Fields(line); len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			in = len(fs) >= 6 && fs[5] == path
			continue
		}
		var kb int64
		if in {
			if _, err := fmt.Sscanf(line, "Rss: %d kB", &kb); err == nil {
				total += kb << 10
			}
		}
	}
	return total
}

// TestRelease reads every page of a 24 MiB file through bbolt's map, which
// makes the map resident, and checks that Release drops it from RSS while
// the data stays readable.
func TestRelease(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("madvise release is Linux only")
	}
	path := filepath.Join(t.TempDir(), "gw.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	val := make([]byte, 1000)
	for i := range val {
		val[i] = byte(i)
	}
	for c := 0; c < 12; c++ {
		err := db.Update(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("t"))
			if err != nil {
				return err
			}
			for i := 0; i < 1000; i++ {
				if err := b.Put([]byte(fmt.Sprintf("%03d-%06d", c, i)), val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var sum, want int
	for i := range val {
		want += int(val[i])
	}
	want *= 12_000
	var before, after int64
	err = db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket([]byte("t")).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			for _, x := range v {
				sum += int(x)
			}
		}
		before = mappedRSS(t, path)
		if err := Release(tx); err != nil {
			return err
		}
		after = mappedRSS(t, path)
		// Still readable after the release (pages fault back in).
		_, v := tx.Bucket([]byte("t")).Cursor().Last()
		if len(v) != len(val) || v[999] != val[999] {
			t.Errorf("last value after release: %d bytes", len(v))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum != want {
		t.Errorf("sum %d, want %d", sum, want)
	}
	t.Logf("map resident: %d KiB after a full scan, %d KiB after Release", before>>10, after>>10)
	if before < 10<<20 {
		t.Errorf("a full scan left %d KiB of the map resident; want most of the ~24 MiB file", before>>10)
	}
	if after > 256<<10 {
		t.Errorf("after Release %d KiB of the map is resident, want ~0", after>>10)
	}
}

// TestMeter: a release is due when the measured RSS grew by the budget
// since the last release, checked every budget/64 counted bytes.
func TestMeter(t *testing.T) {
	var rss int64 = 1000 << 20
	m := NewMeter(16 << 20)
	m.rss = func() int64 { return rss }
	m.Released()
	for i, tc := range []struct {
		count, grow int64
		released    bool // Released is called after a due release
		want        bool
	}{
		{count: 128 << 10, grow: 20 << 20, want: false}, // not yet a check (every 256 KiB counted)
		{count: 128 << 10, grow: 0, want: true},         // checked: grew 20 MiB
		{count: 256 << 10, grow: 0, want: true},         // still grown: Released was not called
		{count: 256 << 10, released: true, want: false}, // after Released: no growth
		{count: 256 << 10, grow: 15 << 20, want: false}, // under the budget
		{count: 4 << 20, grow: 1 << 20, want: true},
	} {
		rss += tc.grow
		if tc.released {
			m.Released()
		}
		if got := m.Add(tc.count); got != tc.want {
			t.Errorf("step %d: Add(%d) = %v, want %v", i, tc.count, got, tc.want)
		}
	}
	if got := m.Releases.Load(); got != 3 {
		t.Errorf("Releases = %d, want 3", got)
	}
}
