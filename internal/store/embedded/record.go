package embedded

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/rules"
)

// record is a row as kept in bbolt: its ETag, its Timestamp and its
// properties with an explicit type each, so int64 stays int64 and 3.0 stays
// float64.
//
// Rows are written in a compact binary form (see appendRecord). Rows written
// by earlier versions are JSON objects, which start with '{' and are still
// read; a row is rewritten in the binary form the next time it is written.
type record struct {
	ETag      string `json:"e"`
	Timestamp int64  `json:"ts"` // Unix nanoseconds, UTC
	Props     []prop `json:"p,omitempty"`
}

// Property kinds. They are the JSON "k" values and, as one byte, the kind
// byte of the binary form.
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

// formatBinary is the first byte of a row in the binary form. A JSON row
// starts with '{', so the two cannot be confused.
//
// The binary form, after that byte (uvarint lengths and counts):
//
//	len(ETag) ETag  Timestamp (8 bytes, little endian)  count
//	count × ( len(name) name  kind  value )
//
// where value is, by kind: s len bytes; i zig-zag varint; f 8 bytes (IEEE
// 754, little endian); b one byte 0 or 1; t zig-zag varint Unix
// milliseconds; x len bytes. Property names are repeated in every row, as
// Azure does, but each costs a length byte instead of JSON's ~25 bytes of
// punctuation, which halves a typical usage row and so the pages the file
// needs (and that the mmap keeps resident).
const formatBinary = 0x01

// appendRecord appends the binary form of a row to dst. props must have
// passed rules.Entity (valid UTF-8, finite numbers, supported types).
func appendRecord(dst []byte, etag string, ts int64, props map[string]any) []byte {
	dst = append(dst, formatBinary)
	dst = appendString(dst, etag)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(ts))
	dst = binary.AppendUvarint(dst, uint64(len(props)))
	for name, v := range props {
		dst = appendString(dst, name)
		switch v := v.(type) {
		case string:
			dst = append(dst, kindString[0])
			dst = appendString(dst, v)
		case int64:
			dst = append(dst, kindInt64[0])
			dst = binary.AppendVarint(dst, v)
		case float64:
			dst = append(dst, kindDouble[0])
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
		case bool:
			dst = append(dst, kindBool[0])
			if v {
				dst = append(dst, 1)
			} else {
				dst = append(dst, 0)
			}
		case time.Time:
			dst = append(dst, kindTime[0])
			dst = binary.AppendVarint(dst, rules.Time(v).UnixMilli())
		case []byte:
			dst = append(dst, kindBinary[0])
			dst = binary.AppendUvarint(dst, uint64(len(v)))
			dst = append(dst, v...)
		}
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// recordSize is an upper bound of len(appendRecord(nil, etag, ts, props)),
// for sizing the buffer.
func recordSize(etag string, props map[string]any) int {
	n := 1 + binary.MaxVarintLen64 + len(etag) + 8 + binary.MaxVarintLen64
	for name, v := range props {
		n += binary.MaxVarintLen64 + len(name) + 1
		switch v := v.(type) {
		case string:
			n += binary.MaxVarintLen64 + len(v)
		case []byte:
			n += binary.MaxVarintLen64 + len(v)
		default:
			n += binary.MaxVarintLen64
		}
	}
	return n
}

// unmarshalRecord decodes v, which may be bbolt memory: the result shares
// nothing with it.
func unmarshalRecord(v []byte) (record, error) {
	if len(v) > 0 && v[0] == formatBinary {
		r, err := decodeBinary(v[1:])
		if err != nil {
			return record{}, fmt.Errorf("decode row: %w", err)
		}
		return r, nil
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return record{}, fmt.Errorf("decode row: %w", err)
	}
	return r, nil
}

var errCorrupt = errors.New("corrupt binary row")

// reader decodes the binary form; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errCorrupt
	}
	r.b = nil
}

func (r *reader) uvarint() uint64 {
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *reader) varint() int64 {
	x, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return x
}

// bytes returns the next n bytes, still in r's memory.
func (r *reader) bytes(n uint64) []byte {
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

func (r *reader) str() string { return string(r.bytes(r.uvarint())) }

func (r *reader) byte() byte {
	b := r.bytes(1)
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

func (r *reader) fixed64() uint64 {
	b := r.bytes(8)
	if len(b) < 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

func decodeBinary(v []byte) (record, error) {
	r := reader{b: v}
	rec := record{ETag: r.str(), Timestamp: int64(r.fixed64())}
	n := r.uvarint()
	if n > uint64(len(r.b)) { // each property takes at least 3 bytes
		return record{}, errCorrupt
	}
	rec.Props = make([]prop, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		p := prop{Name: r.str()}
		switch k := r.byte(); k {
		case kindString[0]:
			p.Kind, p.Str = kindString, r.str()
		case kindInt64[0]:
			p.Kind, p.Int = kindInt64, r.varint()
		case kindDouble[0]:
			p.Kind, p.Float = kindDouble, math.Float64frombits(r.fixed64())
		case kindBool[0]:
			p.Kind, p.Int = kindBool, int64(r.byte())
		case kindTime[0]:
			p.Kind, p.Int = kindTime, r.varint()
		case kindBinary[0]:
			p.Kind, p.Bin = kindBinary, append([]byte{}, r.bytes(r.uvarint())...)
		default:
			r.fail()
		}
		rec.Props = append(rec.Props, p)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	if r.err != nil {
		return record{}, r.err
	}
	return rec, nil
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
