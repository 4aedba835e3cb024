package usage

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// update rewrites the *.golden.json files from the current results:
//
//	go test ./internal/usage/ -run Golden -update
//
// Review the diff before committing: a golden is only as good as the
// reading that approved it.
var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current results")

// kindOf derives a transcript's or body's Kind from its file name prefix.
func kindOf(name string) Kind {
	for _, k := range []Kind{KindCompletions, KindEmbeddings, KindResponses} {
		if strings.HasPrefix(name, string(k)) {
			return k
		}
	}
	return KindChat
}

// testdataFiles returns the base names of testdata files matching pattern.
func testdataFiles(t testing.TB, pattern string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no testdata/%s", pattern)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	return names
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkGolden compares got, as indented JSON, with testdata/name, or
// rewrites the file with -update.
func checkGolden(t *testing.T, name string, got any) {
	t.Helper()
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("%s: got\n%s\nwant\n%s", name, b, want)
	}
}
