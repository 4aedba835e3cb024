package blob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
