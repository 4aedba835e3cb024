package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/foundry-gateway/gateway/internal/spoolfile"
)

// spool is an append-only file of blocks (JSON lines: blob, position and
// data) kept while the blob store is down. One goroutine uses it at a time
// (the Writer's flush lock).
type spool struct{ path string }

// append writes bs and fsyncs before returning.
func (s spool) append(bs []block) error {
	if err := spoolfile.Append(s.path, bs); err != nil {
		return fmt.Errorf("audit spool: %w", err)
	}
	return nil
}

func (s spool) size() int64 { return spoolfile.Size(s.path) }

// replay passes every block from byte offset from on to write, in order,
// and empties the file when all were written (next is then 0). On an
// error next is the offset of the block that failed: a later replay in
// this process resumes there (a new process starts at 0; blocks already
// in are recognised by their blob's length). A line that does not decode
// (a torn tail) is skipped and counted in bad. records counts the records
// of the written blocks.
func (s spool) replay(from int64, write func(block) error) (records, bad int, next int64, err error) {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, 0, nil
	}
	if err != nil {
		return 0, 0, from, fmt.Errorf("audit spool: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return 0, 0, from, fmt.Errorf("audit spool: %w", err)
	}
	next = from
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 8<<20) // a 4 MiB block is ~5.6 MB of base64
	for sc.Scan() {
		end := next + int64(len(sc.Bytes())) + 1
		var b block
		if json.Unmarshal(sc.Bytes(), &b) != nil || b.Name == "" || len(b.Data) == 0 {
			bad++
			next = end
			continue
		}
		if err := write(b); err != nil {
			return records, bad, next, err
		}
		records += b.Records
		next = end
	}
	if err := sc.Err(); err != nil {
		return records, bad, next, fmt.Errorf("audit spool %s: %w", s.path, err)
	}
	if err := os.Truncate(s.path, 0); err != nil {
		return records, bad, next, fmt.Errorf("audit spool: %w", err)
	}
	return records, bad, 0, nil
}
