package embedded

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/rules"
)

// record is how a row is kept in bbolt: JSON with an explicit type per
// property, so int64 stays int64 and 3.0 stays float64.
type record struct {
	ETag      string `json:"e"`
	Timestamp int64  `json:"ts"` // Unix nanoseconds, UTC
	Props     []prop `json:"p,omitempty"`
}

// Property kinds.
const (
	kindString = "s"
	kindInt64  = "i"
	kindDouble = "f"
	kindBool   = "b"
	kindTime   = "t" // Unix milliseconds in I
	kindBinary = "x"
)

type prop struct {
	Name  string  `json:"n"`
	Kind  string  `json:"k"`
	Str   string  `json:"s,omitempty"`
	Int   int64   `json:"i,omitempty"`
	Float float64 `json:"f,omitempty"`
	Bin   []byte  `json:"x,omitempty"`
}

// encodeProps converts validated props (see rules.Value) to their stored
// form.
func encodeProps(props map[string]any) []prop {
	out := make([]prop, 0, len(props))
	for name, v := range props {
		p := prop{Name: name}
		switch v := v.(type) {
		case string:
			p.Kind, p.Str = kindString, v
		case int64:
			p.Kind, p.Int = kindInt64, v
		case float64:
			p.Kind, p.Float = kindDouble, v
		case bool:
			p.Kind = kindBool
			if v {
				p.Int = 1
			}
		case time.Time:
			p.Kind, p.Int = kindTime, rules.Time(v).UnixMilli()
		case []byte:
			p.Kind, p.Bin = kindBinary, v // marshal copies it
		}
		out = append(out, p)
	}
	return out
}

func (r record) marshal() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode row: %w", err)
	}
	return b, nil
}

// unmarshalRecord decodes v, which may be bbolt memory: the result shares
// nothing with it.
func unmarshalRecord(v []byte) (record, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return record{}, fmt.Errorf("decode row: %w", err)
	}
	return r, nil
}

// entity converts the record to a store.Entity with a fresh Props map.
func (r record) entity(pk, rk string) store.Entity {
	props := make(map[string]any, len(r.Props))
	for _, p := range r.Props {
		switch p.Kind {
		case kindString:
			props[p.Name] = p.Str
		case kindInt64:
			props[p.Name] = p.Int
		case kindDouble:
			props[p.Name] = p.Float
		case kindBool:
			props[p.Name] = p.Int != 0
		case kindTime:
			props[p.Name] = time.UnixMilli(p.Int).UTC()
		case kindBinary:
			b := p.Bin
			if b == nil {
				b = []byte{}
			}
			props[p.Name] = b
		}
	}
	return store.Entity{
		PartitionKey: pk,
		RowKey:       rk,
		Props:        props,
		ETag:         r.ETag,
		Timestamp:    time.Unix(0, r.Timestamp).UTC(),
	}
}
