package deploy

import (
	"archive/zip"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"
)

// Names of the entries at the root of the package.
const (
	// HostFile is the Functions host configuration.
	HostFile = "host.json"
	// HandlerFile is the custom handler binary; host.json's
	// customHandler.description.defaultExecutablePath must name it.
	HandlerFile = "handler"
	// ConfigFile is the gateway config, found by `handler serve` through
	// GATEWAY_CONFIG (default gateway.yaml under FUNCTIONS_APP_ROOT_PATH).
	ConfigFile = "gateway.yaml"
	// FunctionsDir is where the repository keeps one folder per function,
	// each with a function.json. It is the source only: in the package each
	// folder sits at the zip root (<name>/function.json), because the host
	// indexes only the folders directly under the app root.
	FunctionsDir = "functions"
	// FunctionFile is the binding file inside each function folder.
	FunctionFile = "function.json"
)

// Options says what goes into a package.
type Options struct {
	// Root is the repository root holding host.json and functions/. Default ".".
	Root string
	// Binary is the linux/amd64 handler, already built (CGO_ENABLED=0). Required.
	Binary string
	// Config is the gateway config file shipped as gateway.yaml. Required.
	Config string
	// Out is the zip to write; its directory is created. Required.
	Out string
}

// modTime is the timestamp of every entry, so that the same inputs give the
// same bytes.
func modTime() time.Time { return time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC) }

type entry struct {
	name string // path inside the zip
	src  string // file to read
	mode fs.FileMode
}

// Package writes the deployment zip described by opts: host.json, every
// functions/<name>/function.json of the repository as <name>/function.json
// at the zip root, the binary as `handler` with mode 0755 and the
// config as gateway.yaml. Entries are sorted by name and carry a fixed
// timestamp, so the output is byte-for-byte reproducible. The zip is written
// to a temporary file and renamed into place. Package does not validate the
// contents; call [Check] on the result.
func Package(opts Options) error {
	if opts.Root == "" {
		opts.Root = "."
	}
	var missing []string
	if opts.Binary == "" {
		missing = append(missing, "Binary")
	}
	if opts.Config == "" {
		missing = append(missing, "Config")
	}
	if opts.Out == "" {
		missing = append(missing, "Out")
	}
	if len(missing) > 0 {
		return fmt.Errorf("deploy: options %v are required", missing)
	}
	entries, err := collect(opts)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(opts.Out), 0o755); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(opts.Out), ".package-*.zip")
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := write(tmp, entries); err != nil {
		tmp.Close()
		return fmt.Errorf("deploy: write %s: %w", opts.Out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("deploy: write %s: %w", opts.Out, err)
	}
	if err := os.Rename(tmp.Name(), opts.Out); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	return nil
}

// collect lists the files to ship, sorted by their name in the zip.
func collect(opts Options) ([]entry, error) {
	entries := []entry{
		{name: HostFile, src: filepath.Join(opts.Root, HostFile), mode: 0o644},
		{name: HandlerFile, src: opts.Binary, mode: 0o755},
		{name: ConfigFile, src: opts.Config, mode: 0o644},
	}
	dirs, err := os.ReadDir(filepath.Join(opts.Root, FunctionsDir))
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	var errs []error
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		src := filepath.Join(opts.Root, FunctionsDir, d.Name(), FunctionFile)
		if _, err := os.Stat(src); err != nil {
			errs = append(errs, fmt.Errorf("deploy: function folder %s has no %s: %w", d.Name(), FunctionFile, err))
			continue
		}
		entries = append(entries, entry{name: path.Join(d.Name(), FunctionFile), src: src, mode: 0o644})
	}
	for _, e := range entries {
		fi, err := os.Stat(e.src)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("deploy: %s: %w", e.name, err))
		case !fi.Mode().IsRegular():
			errs = append(errs, fmt.Errorf("deploy: %s: %s is not a regular file", e.name, e.src))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	return entries, nil
}

func write(f *os.File, entries []entry) error {
	zw := zip.NewWriter(f)
	for _, e := range entries {
		data, err := os.ReadFile(e.src)
		if err != nil {
			return err
		}
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: modTime()}
		// SetMode records a Unix creator and the permission bits in the
		// external attributes, which is what keeps the execute bit when the
		// platform unpacks the zip on Linux.
		h.SetMode(e.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
	}
	return zw.Close()
}
