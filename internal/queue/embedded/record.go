package embedded

import (
	"encoding/binary"
	"errors"
	"sort"
	"time"
)

// Bucket names. A message lives in meta and body under its sequence number
// and has exactly one entry in one of the three index buckets, keyed by the
// time it is next due (its lock expiry while locked) and its sequence number,
// so "what is due now" is a prefix scan in time order.
var (
	bucketMeta  = []byte("meta")  // seq -> record
	bucketBody  = []byte("body")  // seq -> body
	bucketIDs   = []byte("ids")   // message ID -> seq, for duplicate detection
	bucketReady = []byte("ready") // index: the queue
	bucketLast  = []byte("last")  // index: locked on the last delivery MaxDeliveryCount allows
	bucketDead  = []byte("dead")  // index: the dead-letter queue
)

// where says which index bucket holds a record's entry.
type where byte

const (
	inReady where = 1
	inLast  where = 2
	inDead  where = 3
)

func (w where) bucket() []byte {
	switch w {
	case inLast:
		return bucketLast
	case inDead:
		return bucketDead
	default:
		return bucketReady
	}
}

// record is the state of one message, everything but its body.
type record struct {
	where         where
	locked        bool     // locked until due
	due           int64    // unix nanoseconds: when due, or the lock expiry when locked
	token         [16]byte // lock token of the current delivery
	enqueuedAt    int64    // unix nanoseconds
	deliveries    uint32   // every delivery since Send (Message.DeliveryCount)
	sinceSchedule uint32   // deliveries since Send or the last Reschedule (MaxDeliveryCount applies to these)
	id            string
	reason        string // dead-letter reason
	description   string // dead-letter description
	props         map[string]string
}

const recordVersion = 1

var errCorrupt = errors.New("corrupt record")

func (r *record) encode() []byte {
	b := make([]byte, 0, 64+len(r.id)+len(r.reason)+len(r.description))
	b = append(b, recordVersion, byte(r.where))
	if r.locked {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(r.due))
	b = append(b, r.token[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.enqueuedAt))
	b = binary.AppendUvarint(b, uint64(r.deliveries))
	b = binary.AppendUvarint(b, uint64(r.sinceSchedule))
	b = appendString(b, r.id)
	b = appendString(b, r.reason)
	b = appendString(b, r.description)
	b = binary.AppendUvarint(b, uint64(len(r.props)))
	keys := make([]string, 0, len(r.props))
	for k := range r.props {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic bytes
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, r.props[k])
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads what encode wrote; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fixed(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.err = errCorrupt
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || uint64(len(d.b)) < n {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func decodeRecord(b []byte) (*record, error) {
	d := &decoder{b: b}
	head := d.fixed(3)
	if d.err == nil && head[0] != recordVersion {
		return nil, errCorrupt
	}
	r := &record{where: where(head[1]), locked: head[2] == 1}
	r.due = int64(binary.BigEndian.Uint64(d.fixed(8)))
	copy(r.token[:], d.fixed(16))
	r.enqueuedAt = int64(binary.BigEndian.Uint64(d.fixed(8)))
	r.deliveries = uint32(d.uvarint())
	r.sinceSchedule = uint32(d.uvarint())
	r.id = d.string()
	r.reason = d.string()
	r.description = d.string()
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = errCorrupt
	}
	if d.err == nil && n > 0 {
		r.props = make(map[string]string, n)
		for range n {
			k := d.string()
			r.props[k] = d.string()
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}

// seqKey is the meta/body key of a sequence number.
func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

// indexKey orders index entries by due time, then sequence number.
func indexKey(due int64, seq uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(max(due, 0)))
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

func splitIndexKey(k []byte) (due int64, seq uint64) {
	return int64(binary.BigEndian.Uint64(k)), binary.BigEndian.Uint64(k[8:])
}

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }
