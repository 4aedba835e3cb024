package deploy

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// sharedDir holds what the tests build once per package run (the handler).
var sharedDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is the module root (the directory holding go.mod).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
	buildTime time.Duration
)

// builtHandler builds the gateway (the main package at the repo root) for
// linux/amd64 with CGO_ENABLED=0, the way make package does, once per test
// binary run, and returns the path of the binary.
func builtHandler(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		buildPath = filepath.Join(sharedDir, "handler")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", buildPath, ".")
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build of the gateway failed: %v\n%s", err, out)
		}
		buildTime = time.Since(start)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// packageOptions are the options make package uses, with the zip in dir.
func packageOptions(t testing.TB, dir string) Options {
	t.Helper()
	root := repoRoot(t)
	return Options{
		Root:   root,
		Binary: builtHandler(t),
		Config: filepath.Join(root, "infra", "config", "azure.yaml"),
		Out:    filepath.Join(dir, "gateway.zip"),
	}
}

// zipFile is one entry of a package being rewritten by a test.
type zipFile struct {
	name string
	mode os.FileMode
	unix bool // record a Unix mode (SetMode); false records none
	data []byte
}

func readZip(t testing.TB, p string) []zipFile {
	t.Helper()
	r, err := zip.OpenReader(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var files []zipFile
	for _, f := range r.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, zipFile{name: f.Name, mode: f.Mode().Perm(), unix: true, data: data})
	}
	return files
}

func writeZip(t testing.TB, p string, files []zipFile) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.name, Method: zip.Store} // Store: fast under -race
		if f.unix {
			h.SetMode(f.mode)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
