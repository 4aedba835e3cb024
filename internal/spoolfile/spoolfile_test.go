package spoolfile

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestAppend: lines accumulate across appends in order, one JSON value a
// line, in a directory Append creates; Size follows the file; an empty
// append creates nothing.
func TestAppend(t *testing.T) {
	type item struct {
		N int    `json:"n"`
		S string `json:"s"`
	}
	path := filepath.Join(t.TempDir(), "sub", "spool.jsonl")
	if err := Append[item](path, nil); err != nil || Size(path) != 0 {
		t.Fatalf("empty append: %v, size %d", err, Size(path))
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("empty append created the file: %v", err)
	}
	if err := Append(path, []item{{1, "a"}, {2, "b\nc"}}); err != nil {
		t.Fatal(err)
	}
	if err := Append(path, []item{{3, "d"}}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []item
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var it item
		if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, it)
	}
	if len(got) != 3 || got[0] != (item{1, "a"}) || got[1] != (item{2, "b\nc"}) || got[2] != (item{3, "d"}) {
		t.Errorf("lines %+v", got)
	}
	fi, _ := f.Stat()
	if Size(path) != fi.Size() || fi.Size() == 0 {
		t.Errorf("Size %d, file %d", Size(path), fi.Size())
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}
