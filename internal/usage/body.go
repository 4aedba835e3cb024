package usage

import (
	"io"
	"sync"

	"github.com/tidwall/gjson"
)

// FromBody returns the usage in a complete JSON response body: the
// top-level "usage" object of a chat completion, legacy completion,
// embeddings list or Responses API response. kind picks the field names (see
// [Usage]). Reported is false when there is no usage object (an error body,
// "usage": null, not JSON at all). A missing total_tokens is
// prompt + completion.
func FromBody(kind Kind, body []byte) Usage {
	r := gjson.Get(view(body), "usage")
	if !r.IsObject() || !gjson.Valid(r.Raw) {
		return Usage{}
	}
	u, _ := parseUsage(r, kind)
	return u
}

// Recorder bounds. A usage object is a few hundred bytes at the end of the
// body, so the tail window only has to be far larger than that.
const (
	// recorderMaxBody is the largest body kept whole. Chat, completion and
	// Responses bodies are nearly always below it.
	recorderMaxBody = 1 << 20
	// recorderHead is what is kept of the start of a larger body, in case a
	// backend put usage first.
	recorderHead = 64 << 10
	// recorderTail is the window searched at the end of a larger body
	// (embeddings of many inputs run to many MiB).
	recorderTail = 64 << 10
)

// Recorder is the io.Writer the proxy tees a non-streaming response body
// into while copying it to the client, so usage can be read without the
// proxy ever holding the whole body.
//
// Bound: a Recorder keeps the whole body while it is at most 1 MiB. Beyond
// that it keeps only the first 64 KiB and a sliding window of the last
// 64 KiB (at most 128 KiB of buffer), so it never holds more than
// 1 MiB + 128 KiB whatever the body size. [Recorder.Usage] then finds usage
// in the tail (where every OpenAI API puts it) or, failing that, the head.
//
// A Recorder is not safe for concurrent use. The zero value is not usable;
// call [NewRecorder], or [Recorder.Reset] on one taken from a sync.Pool.
type Recorder struct {
	kind Kind
	// buf is the whole body, or its first headBytes once truncated.
	buf []byte
	// tail is a window holding at least the last tailBytes of the body
	// once truncated (see appendWindow).
	tail      []byte
	truncated bool

	// Limits are fields so tests can exercise truncation with small bodies.
	maxBody, headBytes, tailBytes int
}

// Interface guard.
var _ io.Writer = (*Recorder)(nil)

// recorders are Recorders to reuse (see GetRecorder).
var recorders = sync.Pool{New: func() any {
	return &Recorder{maxBody: recorderMaxBody, headBytes: recorderHead, tailBytes: recorderTail}
}}

// pooledMax is the largest buffer a Recorder may keep when it goes back
// to the pool, so the pool never pins big bodies.
const pooledMax = 64 << 10

// GetRecorder returns a reset Recorder from a pool; give it back with
// [PutRecorder] once its Usage has been read.
func GetRecorder(kind Kind) *Recorder {
	r := recorders.Get().(*Recorder)
	r.Reset(kind)
	return r
}

// PutRecorder returns r to the pool, unless it grew large buffers. r must
// not be used afterwards.
func PutRecorder(r *Recorder) {
	if cap(r.buf) > pooledMax || cap(r.tail) > pooledMax {
		return
	}
	recorders.Put(r)
}

// NewRecorder returns a Recorder for a body of the given kind.
func NewRecorder(kind Kind) *Recorder {
	r := &Recorder{maxBody: recorderMaxBody, headBytes: recorderHead, tailBytes: recorderTail}
	r.Reset(kind)
	return r
}

// Reset empties r for a new body of the given kind. It keeps the buffers, so
// a Recorder reused through a sync.Pool does not allocate again; each one
// pins up to the bound documented on [Recorder].
func (r *Recorder) Reset(kind Kind) {
	r.kind = kind
	r.buf = r.buf[:0]
	r.tail = r.tail[:0]
	r.truncated = false
}

// Write records p. It never fails: the proxy's copy to the client must not
// depend on bookkeeping.
func (r *Recorder) Write(p []byte) (int, error) {
	if r.truncated {
		r.tail = appendWindow(r.tail, p, r.tailBytes)
		return len(p), nil
	}
	if len(r.buf)+len(p) <= r.maxBody {
		if cap(r.buf)-len(r.buf) < len(p) {
			// Grow by doubling but never past maxBody, so the bound is exact.
			nb := make([]byte, len(r.buf), min(max(2*cap(r.buf), len(r.buf)+len(p), 4<<10), r.maxBody))
			copy(nb, r.buf)
			r.buf = nb
		}
		r.buf = append(r.buf, p...)
		return len(p), nil
	}
	// Too big to keep whole: the tail starts from the end of what we hold,
	// then the head is cut down in place.
	r.truncated = true
	r.tail = appendWindow(r.tail[:0], r.buf, r.tailBytes)
	r.tail = appendWindow(r.tail, p, r.tailBytes)
	if len(r.buf) > r.headBytes {
		r.buf = r.buf[:r.headBytes]
	} else {
		r.buf = append(r.buf, p[:min(r.headBytes-len(r.buf), len(p))]...)
	}
	return len(p), nil
}

// Usage returns the usage in the recorded body. For a body that was kept
// whole this is [FromBody]. For a larger one it is the last top-level
// "usage" object in the tail window, else a complete top-level "usage"
// object in the head, else not reported.
func (r *Recorder) Usage() Usage {
	if !r.truncated {
		return FromBody(r.kind, r.buf)
	}
	tail := r.tail
	if len(tail) > r.tailBytes {
		// Search exactly the documented window, not whatever slack the
		// window buffer happens to hold, so results do not depend on how the
		// body was split into writes.
		tail = tail[len(tail)-r.tailBytes:]
	}
	if obj, ok := lastUsageObject(tail, 1); ok {
		if u, ok := usageFromObject(obj, r.kind); ok {
			return u
		}
	}
	// gjson stops at the first top-level "usage"; on a cut head it finds
	// nothing rather than something wrong, and the object is validated.
	if h := gjson.Get(view(r.buf), "usage"); h.IsObject() && gjson.Valid(h.Raw) {
		u, _ := parseUsage(h, r.kind)
		return u
	}
	return Usage{}
}

// appendWindow appends b to the window w, keeping at least the last size
// bytes written and at most 2*size: when the buffer would pass 2*size it
// slides the last bytes to the front. Each byte is copied a bounded number
// of times, so the cost is linear in what is written.
func appendWindow(w, b []byte, size int) []byte {
	if len(b) >= size {
		return append(w[:0], b[len(b)-size:]...)
	}
	if len(w)+len(b) > 2*size {
		keep := size - len(b)
		w = w[:copy(w, w[len(w)-keep:])]
	}
	if len(w)+len(b) > cap(w) {
		// Allocate the full window once instead of letting append pick a
		// size class past 2*size.
		nw := make([]byte, len(w), 2*size)
		copy(nw, w)
		w = nw
	}
	return append(w, b...)
}
