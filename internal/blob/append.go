package blob

import (
	"errors"
	"fmt"
)

// MaxAppendBlock is the most data one AppendAt call takes: 4 MiB, the
// append block size every service version (and Azurite) accepts
// (https://learn.microsoft.com/rest/api/storageservices/append-block).
const MaxAppendBlock = 4 << 20

// MaxAppendBlocks is how many blocks an Azure append blob holds
// (50,000); writers start a new blob before that.
const MaxAppendBlocks = 50000

// ErrPosition is wrapped by a [PositionError].
var ErrPosition = errors.New("blob: append position")

// PositionError says an append blob was not the length AppendAt expected
// (Azure's AppendPositionConditionNotMet): nothing was appended. Size is
// its length now (-1 when unknown).
type PositionError struct {
	Name string
	At   int64
	Size int64
}

func (e *PositionError) Error() string {
	return fmt.Sprintf("blob: append %s at %d: the blob is %d bytes", e.Name, e.At, e.Size)
}

// Unwrap makes errors.Is(err, ErrPosition) true.
func (e *PositionError) Unwrap() error { return ErrPosition }

func checkBlock(name string, data []byte, at int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	if len(data) == 0 || len(data) > MaxAppendBlock || at < 0 {
		return fmt.Errorf("%w: append %s: %d bytes at %d: want 1 to %d bytes at a position >= 0", ErrInvalid, name, len(data), at, MaxAppendBlock)
	}
	return nil
}
