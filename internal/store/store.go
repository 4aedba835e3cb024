package store

import (
	"context"
	"errors"
	"time"
)

// Errors every implementation returns (wrapped is fine; callers use errors.Is).
var (
	// ErrNotFound: the row (or table) does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: Insert of a row whose keys are already taken.
	ErrExists = errors.New("store: already exists")
	// ErrPrecondition: the If-Match ETag no longer matches the stored row.
	ErrPrecondition = errors.New("store: etag mismatch")
	// ErrInvalid: the entity or batch breaks a Table Storage rule (key
	// characters, property count or size, batch size or partition).
	ErrInvalid = errors.New("store: invalid entity or batch")
)

// Limits of Azure Table Storage that both implementations enforce, so code
// that passes against the embedded store also passes against Azure.
const (
	MaxBatchOps    = 100
	MaxBatchBytes  = 4 << 20
	MaxEntityBytes = 1 << 20
	MaxKeyLen      = 1024 // UTF-16 bytes: 512 ASCII characters
	MaxCustomProps = 252
	MaxPropNameLen = 255
)

// Entity is one row. Props values must be one of: string, int64, float64,
// bool, time.Time (UTC, millisecond precision is what survives Azure), []byte.
// Other Go types are rejected with ErrInvalid.
type Entity struct {
	PartitionKey string
	RowKey       string
	Props        map[string]any
	// ETag is set on entities returned by Get and Query and is what Update
	// and Delete compare against. Writes ignore it.
	ETag string
	// Timestamp is the server-side last-modified time (read only).
	Timestamp time.Time
}

// OpKind is the kind of a batch operation.
type OpKind int

const (
	// OpInsert fails the whole batch with ErrExists when the row exists.
	OpInsert OpKind = iota
	// OpUpsert inserts or replaces the row unconditionally.
	OpUpsert
	// OpMerge inserts or merges properties unconditionally.
	OpMerge
	// OpDelete deletes the row; a missing row fails the batch with ErrNotFound.
	OpDelete
)

// Op is one operation of a batch.
type Op struct {
	Kind   OpKind
	Entity Entity
}

// Query selects rows of one partition. Zero values mean "no bound".
type Query struct {
	PartitionKey  string // required unless AllPartitions
	AllPartitions bool
	// RowKey range, inclusive From, exclusive To (string order).
	RowKeyFrom string
	RowKeyTo   string
	// Limit caps the number of rows returned; 0 means all.
	Limit int
}

// Table is one named table.
type Table interface {
	// Get reads one row, or returns ErrNotFound.
	Get(ctx context.Context, pk, rk string) (Entity, error)
	// Insert creates a row and returns its ETag; ErrExists if it exists.
	Insert(ctx context.Context, e Entity) (string, error)
	// Update replaces a row. ifMatch is an ETag, or "*" for unconditional;
	// ErrPrecondition on mismatch, ErrNotFound if the row is missing.
	Update(ctx context.Context, e Entity, ifMatch string) (string, error)
	// Upsert inserts or replaces a row unconditionally and returns its ETag.
	Upsert(ctx context.Context, e Entity) (string, error)
	// Delete removes a row. ifMatch as in Update; deleting a missing row is ErrNotFound.
	Delete(ctx context.Context, pk, rk, ifMatch string) error
	// Query lists rows ordered by PartitionKey, RowKey.
	Query(ctx context.Context, q Query) ([]Entity, error)
	// Batch applies ops atomically. All ops must share one PartitionKey, be at
	// most MaxBatchOps, name each row once, and encode under MaxBatchBytes;
	// otherwise ErrInvalid and nothing is written. If any op fails nothing is
	// written and the error wraps ErrExists / ErrNotFound as appropriate.
	Batch(ctx context.Context, ops []Op) error
}

// Store opens tables by name, creating them when missing.
type Store interface {
	Table(ctx context.Context, name string) (Table, error)
	// Ping checks the store is reachable.
	Ping(ctx context.Context) error
	Close() error
}
