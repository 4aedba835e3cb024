package blob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Dir keeps a container's blobs as files under root/<container>. A Put is
// atomic (a temporary file, fsynced, then renamed over the name), so a
// reader sees the old blob or the new one, never part of one, and a crash
// leaves at most a stray temporary file. Safe for concurrent use, also by
// several processes sharing the directory.
type Dir struct {
	dir string
}

// OpenDir returns the container's directory under root, creating it.
func OpenDir(root, container string) (*Dir, error) {
	if err := checkContainer(container); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, container)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	return &Dir{dir: dir}, nil
}

func (d *Dir) path(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return filepath.Join(d.dir, filepath.FromSlash(name)), nil
}

// Put stores data under name, replacing any blob of that name.
func (d *Dir) Put(ctx context.Context, name string, data []byte) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("blob: put %s: %w", name, err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".put-*")
	if err != nil {
		return fmt.Errorf("blob: put %s: %w", name, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		_ = os.Remove(tmp) // best effort: the write already failed
		return fmt.Errorf("blob: put %s: %w", name, err)
	}
	// Make the rename itself durable.
	if dh, err := os.Open(filepath.Dir(p)); err == nil {
		err = dh.Sync()
		dh.Close()
		if err != nil {
			return fmt.Errorf("blob: put %s: sync directory: %w", name, err)
		}
	}
	return nil
}

// Get returns the blob's content, or ErrNotFound.
func (d *Dir) Get(ctx context.Context, name string) ([]byte, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: get %s: %w", name, err)
	}
	return b, nil
}

// Delete removes the blob. Deleting a missing blob is not an error, so a
// retried delete succeeds.
func (d *Dir) Delete(ctx context.Context, name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: delete %s: %w", name, err)
	}
	return nil
}

// AppendAt appends data to the file name if it is at bytes long (a missing
// file is 0 bytes long and created), and fsyncs it; see [Azure.AppendAt].
// One writer per name: the length check and the write are not atomic
// between processes. Files have no block limit; blocks is 0.
func (d *Dir) AppendAt(ctx context.Context, name string, data []byte, at int64) (blocks int, err error) {
	if err := checkBlock(name, data, at); err != nil {
		return 0, err
	}
	p, err := d.path(name)
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return 0, fmt.Errorf("blob: append %s: %w", name, err)
	}
	flags := os.O_RDWR
	if at == 0 {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(p, flags, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, &PositionError{Name: name, At: at, Size: 0}
	}
	if err != nil {
		return 0, fmt.Errorf("blob: append %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("blob: append %s: %w", name, err)
	}
	if fi.Size() != at {
		return 0, &PositionError{Name: name, At: at, Size: fi.Size()}
	}
	if _, err := f.WriteAt(data, at); err != nil {
		return 0, fmt.Errorf("blob: append %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("blob: append %s: %w", name, err)
	}
	if at == 0 { // make the new file's name durable
		if dh, err := os.Open(filepath.Dir(p)); err == nil {
			_ = dh.Sync()
			dh.Close()
		}
	}
	return 0, nil
}

// AppendSize returns the file's length, or ErrNotFound.
func (d *Dir) AppendSize(ctx context.Context, name string) (size int64, blocks int, err error) {
	p, err := d.path(name)
	if err != nil {
		return 0, 0, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("blob: stat %s: %w", name, err)
	}
	return fi.Size(), 0, nil
}

// List returns the names of the blobs that start with prefix, in order.
func (d *Dir) List(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	root := d.dir // walk only the prefix's deepest directory
	if i := strings.LastIndexByte(prefix, '/'); i > 0 {
		root = filepath.Join(d.dir, filepath.FromSlash(prefix[:i]))
	}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return filepath.SkipAll
		}
		if err != nil {
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".put-") {
			return nil
		}
		rel, err := filepath.Rel(d.dir, p)
		if err != nil {
			return err
		}
		if name := filepath.ToSlash(rel); strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("blob: list %s: %w", prefix, err)
	}
	sort.Strings(names)
	return names, nil
}
