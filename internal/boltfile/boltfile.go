package boltfile

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Errors Open wraps, for callers that branch on the cause.
var (
	// ErrLocked: another process has the file open.
	ErrLocked = errors.New("file is in use by another process")
	// ErrDamaged: the file is not a readable bbolt file.
	ErrDamaged = errors.New("file is damaged or not a gateway data file")
)

// Open opens path, waiting up to lockWait for another process's lock. what
// names the file's role in messages ("embedded store", "embedded queue").
//
// Damage is found at open time where bbolt can see it (meta pages,
// checksums) and by touching every top-level bucket's first page, with
// memory faults of the mapped file turned into errors instead of crashes.
func Open(path, what string, lockWait time.Duration) (db *bbolt.DB, err error) {
	defer func() {
		if v := recover(); v != nil {
			if db != nil {
				_ = db.Close()
			}
			db, err = nil, damaged(path, what, fmt.Errorf("%v", v))
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockWait})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("%s %s: %w (waited %v for its lock): is another gateway or `handler` command using it? "+
			"Stop that process, or give this one its own file (store.path / queue.path); "+
			"for several instances use Azure Table Storage and Service Bus", what, path, ErrLocked, lockWait)
	case err != nil:
		if os.IsPermission(err) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s %s: %w", what, path, err)
		}
		return nil, damaged(path, what, err)
	}
	if err := db.View(touch); err != nil {
		_ = db.Close()
		return nil, damaged(path, what, err)
	}
	return db, nil
}

// touch reads the first entry of every top-level bucket (and so each
// bucket's root page): cheap, and where a damaged file usually faults.
func touch(tx *bbolt.Tx) error {
	return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			break
		}
		return nil
	})
}

func damaged(path, what string, cause error) error {
	return fmt.Errorf("%s %s: %w (%v). Move the file aside (for example `mv %s %s.damaged`) and start again "+
		"to begin with an empty one, or restore it from a backup", what, path, ErrDamaged, cause, path, path)
}
