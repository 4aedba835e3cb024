package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound means no audit record has that request id.
var ErrNotFound = errors.New("audit: no record for that request id")

// reader is what Lookup reads (internal/blob's Azure and Dir have it).
type reader interface {
	List(ctx context.Context, prefix string) ([]string, error)
	Get(ctx context.Context, name string) ([]byte, error)
}

// Lookup returns the record of request id. The id's timestamp names the
// day (and the next, for a request that began just before midnight);
// team, when set, narrows the search to that team's blobs. It reads every
// blob of those days: an admin's occasional look-up, not a query path.
func Lookup(ctx context.Context, st reader, id, team string) (Record, error) {
	t, ok := IDTime(id)
	if !ok {
		return Record{}, fmt.Errorf("%w: %q is not a gateway request id", ErrNotFound, id)
	}
	needle := []byte(`"request_id":"` + id + `"`)
	for _, day := range []time.Time{t, t.Add(24 * time.Hour)} {
		prefix := Day(day) + "/"
		if team != "" {
			prefix += TeamSegment(team) + "/"
		}
		names, err := st.List(ctx, prefix)
		if err != nil {
			return Record{}, err
		}
		for _, name := range names {
			data, err := st.Get(ctx, name)
			if err != nil {
				return Record{}, err
			}
			if !bytes.Contains(data, needle) {
				continue
			}
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(make([]byte, 64<<10), len(data)+1)
			for sc.Scan() {
				if !bytes.Contains(sc.Bytes(), needle) {
					continue
				}
				var r Record
				if json.Unmarshal(sc.Bytes(), &r) == nil && r.RequestID == id {
					return r, nil
				}
			}
		}
	}
	return Record{}, ErrNotFound
}

// Scan calls fn for every record of the blobs under prefix (tests, audits
// of a day). Lines that do not decode (a torn tail) are counted in bad.
func Scan(ctx context.Context, st reader, prefix string, fn func(name string, r Record)) (bad int, err error) {
	names, err := st.List(ctx, prefix)
	if err != nil {
		return 0, err
	}
	for _, name := range names {
		data, err := st.Get(ctx, name)
		if err != nil {
			return bad, err
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 64<<10), len(data)+1)
		for sc.Scan() {
			var r Record
			if json.Unmarshal(sc.Bytes(), &r) != nil {
				bad++
				continue
			}
			fn(name, r)
		}
	}
	return bad, nil
}
