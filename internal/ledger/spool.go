package ledger

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/spoolfile"
)

// spoolLine is one spool line: the event, and its exact cost (the JSON
// "cost" is rounded to money.Decimals; a line written before costNanos
// existed has a float64 there, read as exactly as it was written).
type spoolLine struct {
	Event
	CostNanos *int64 `json:"costNanos,omitempty"`
}

// spool is an append-only file of events (JSON lines) kept while the store
// is down. It is used by one goroutine at a time (the Writer's flush lock).
type spool struct{ path string }

// append writes evs and fsyncs before returning, so a spooled event
// survives a crash of the process or the machine.
func (s spool) append(evs []Event) error {
	lines := make([]spoolLine, len(evs))
	for i, e := range evs {
		n := int64(e.Cost)
		lines[i] = spoolLine{Event: e, CostNanos: &n}
	}
	if err := spoolfile.Append(s.path, lines); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// size is the spool's length in bytes (0 when it does not exist).
func (s spool) size() int64 { return spoolfile.Size(s.path) }

// replay reads the spool in chunks of n events and passes each to write.
// When every chunk was written it empties the file. A line that does not
// decode (the torn tail of a crash mid-append) is counted in bad and
// skipped. On a write error the file is kept whole: replaying it again is
// harmless because rows are upserted by request id.
func (s spool) replay(n int, write func([]Event) error) (replayed, bad int, err error) {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	chunk := make([]Event, 0, n)
	for sc.Scan() {
		var l spoolLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.RequestID == "" {
			bad++
			continue
		}
		e := l.Event
		if l.CostNanos != nil {
			e.Cost = money.Nanos(*l.CostNanos)
		}
		chunk = append(chunk, e)
		if len(chunk) == n {
			if err := write(chunk); err != nil {
				return replayed, bad, err
			}
			replayed += len(chunk)
			chunk = chunk[:0]
		}
	}
	if err := sc.Err(); err != nil {
		return replayed, bad, fmt.Errorf("spool %s: %w", s.path, err)
	}
	if len(chunk) > 0 {
		if err := write(chunk); err != nil {
			return replayed, bad, err
		}
		replayed += len(chunk)
	}
	if err := os.Truncate(s.path, 0); err != nil {
		return replayed, bad, fmt.Errorf("spool: %w", err)
	}
	return replayed, bad, nil
}
