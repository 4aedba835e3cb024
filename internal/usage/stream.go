package usage

import (
	"bytes"
	"errors"
	"io"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Stream bounds.
const (
	// maxEventBytes is the largest event held in memory. A bigger one is
	// passed through as it arrives (see Stream); 1 MiB is far above any chat
	// chunk but a Responses response.completed event repeats the whole
	// output, which with images can pass it.
	maxEventBytes = 1 << 20
	// eventHeadBytes of a passed-through event are read for its data line
	// and event type.
	eventHeadBytes = 4 << 10
	// eventTailBytes of a passed-through event are searched for usage; the
	// usage object is the last member of a chunk or response.
	eventTailBytes = 64 << 10
	// maxTextBytes caps the text kept for KeepText: enough to estimate the
	// completion tokens of any stream that was cut short.
	maxTextBytes = 256 << 10
)

// errClosed is returned by Write after Close.
var errClosed = errors.New("usage: write to closed Stream")

var (
	bom      = []byte("\xEF\xBB\xBF")
	doneData = []byte("[DONE]")
)

// StreamOptions select what a [Stream] does besides counting usage.
type StreamOptions struct {
	// StripUsageChunk removes from the forwarded stream the usage-only chunk
	// ("choices":[] and a non-null "usage") of a chat or legacy completions
	// stream. The gateway sets it when it injected
	// stream_options.include_usage itself, so the client gets exactly the
	// stream it asked for. False (the default) forwards every byte. It is
	// ignored for other kinds: Responses streams always carry usage.
	StripUsageChunk bool
	// KeepText accumulates the generated text (see [Stream.Text]), up to
	// 256 KiB, to estimate the usage of a stream cut before its usage
	// arrived. False (the default) keeps none and skips that parsing.
	KeepText bool
}

// Stream is the io.WriteCloser a streaming (text/event-stream) response is
// copied through. It forwards every complete server-sent event to dst
// unchanged as soon as the blank line ending it arrives, and reads usage
// from the events on the way (see [Stream.Usage]); input may be split
// anywhere, and lines may end in "\n", "\r\n" or "\r".
//
// Bound: only the unfinished event is held, up to 1 MiB. An event that grows
// past that is forwarded as it arrives; of it only the first 4 KiB (data line
// and type) and the last 64 KiB (usage) are looked at, and it is never
// stripped or read for text. The text kept for KeepText is capped at
// 256 KiB.
//
// After a write to dst fails, Stream keeps counting but writes nothing more,
// and every Write returns that error, so a caller may stop (io.Copy does) or
// keep draining the upstream for its usage.
//
// A Stream is created per response and is not safe for concurrent use.
type Stream struct {
	dst  io.Writer
	kind Kind
	opts StreamOptions

	// Limits are fields so tests can exercise the pass-through path with
	// small events.
	maxEvent, headBytes, tailBytes, textBytes int

	// pending is the unfinished event; scratch joins multi-line data.
	pending []byte
	scratch []byte
	// dropNull: the event just inspected is kept but carries the
	// "usage":null the gateway's injected include_usage added; it is
	// written without that field (into rewritten) so the client's stream
	// is what it would have been without the injection.
	dropNull  bool
	rewritten []byte

	// Line state carried between writes.
	lineStart bool // the next byte starts a line
	crPending bool // the last byte was a CR ending a line: a LF next is part of it
	crEvent   bool // ...and that line was the blank line ending an event
	crDrop    bool // ...and that event was stripped, so the LF goes too

	// Pass-through state for an event larger than maxEvent.
	big     bool
	bigData bool // it has a data line
	bigMode bigMode
	bigTail []byte

	started bool // the first event has been seen (a BOM may precede it)
	closed  bool
	err     error // first dst write error

	usage    Usage
	events   int
	done     bool
	text     []byte
	textFull bool
}

// bigMode says where a passed-through event may hold usage.
type bigMode uint8

const (
	bigNoUsage  bigMode = iota
	bigChunk            // chat/completions chunk: top-level "usage"
	bigTerminal         // Responses terminal event: "response.usage"
)

// Interface guard.
var _ io.WriteCloser = (*Stream)(nil)

// NewStream returns a Stream forwarding to dst a stream of the given kind.
func NewStream(dst io.Writer, kind Kind, opts StreamOptions) *Stream {
	s := &Stream{}
	s.Reset(dst, kind, opts)
	return s
}

// Reset makes s a new Stream forwarding to dst, keeping its buffers so a
// Stream reused through a sync.Pool does not allocate again.
func (s *Stream) Reset(dst io.Writer, kind Kind, opts StreamOptions) {
	*s = Stream{
		dst: dst, kind: kind, opts: opts,
		maxEvent: maxEventBytes, headBytes: eventHeadBytes,
		tailBytes: eventTailBytes, textBytes: maxTextBytes,
		pending: s.pending[:0], scratch: s.scratch[:0],
		bigTail: s.bigTail[:0], text: s.text[:0],
		lineStart: true,
	}
}

// Write forwards every event that p completes and holds the unfinished
// rest. It returns len(p) and the first error dst returned, if any.
func (s *Stream) Write(p []byte) (int, error) {
	if s.closed {
		return 0, errClosed
	}
	if len(p) == 0 {
		return 0, s.err
	}
	// p[fwd:ev] is complete and kept but not yet written to dst (written in
	// one call per run of events); p[ev:] belongs to the unfinished event.
	fwd, ev, i := 0, 0, 0
	// Most streams never use CR; knowing p has none halves line scanning.
	cr := bytes.IndexByte(p, '\r') >= 0
	if s.crPending {
		s.crPending = false
		if p[0] == '\n' {
			i = 1
			if s.crEvent {
				// The LF ends the event already handled, not the next one:
				// it is forwarded, or dropped along with a stripped event.
				ev = 1
				if s.crDrop {
					fwd = 1
				}
			}
		}
		s.crEvent, s.crDrop = false, false
	}
	for i < len(p) {
		if s.lineStart {
			if c := p[i]; c == '\n' || c == '\r' {
				// A blank line: the event ends after this terminator.
				end := i + 1
				if c == '\r' {
					if end < len(p) {
						if p[end] == '\n' {
							end++
						}
					} else {
						s.crPending, s.crEvent = true, true
					}
				}
				fwd = s.endEvent(p, fwd, ev, i, end, cr)
				ev, i = end, end
				continue
			}
			s.lineStart = false
		}
		k := lineEnd(p[i:], cr)
		if k < 0 {
			break
		}
		i += k
		if p[i] == '\r' {
			if i+1 < len(p) {
				if p[i+1] == '\n' {
					i++
				}
			} else {
				s.crPending = true
			}
		}
		i++
		s.lineStart = true
	}
	s.hold(p, fwd, ev)
	return len(p), s.err
}

// endEvent handles the event ending in p at end (its blank line starts at
// term) and returns the new start of the unwritten run.
func (s *Stream) endEvent(p []byte, fwd, ev, term, end int, cr bool) int {
	switch {
	case s.big:
		// Already being passed through; p[ev:end] is in the run.
		s.bigTail = appendWindow(s.bigTail, p[ev:term], s.tailBytes)
		s.finishBig()
		return fwd
	case len(s.pending) > 0:
		if len(s.pending)+term-ev > s.maxEvent {
			// Completed here but too big to join: pass it through.
			s.write(p[fwd:ev])
			s.beginBig(s.pending, p[ev:term])
			s.pending = s.pending[:0]
			s.bigTail = appendWindow(s.bigTail, p[ev:term], s.tailBytes)
			s.finishBig()
			return ev
		}
		s.pending = append(s.pending, p[ev:end]...)
		s.write(p[fwd:ev])
		if s.inspect(s.pending, true) {
			if s.dropNull {
				s.write(s.withoutNullUsage(s.pending))
			} else {
				s.write(s.pending)
			}
		} else if s.crEvent {
			s.crDrop = true
		}
		s.pending = s.pending[:0]
		return end
	default:
		if term-ev > s.maxEvent {
			// Treated like one that arrived in pieces, so the result does
			// not depend on how the input was split.
			e := p[ev:term]
			data, mode := s.bigMeta(e[:min(len(e), s.headBytes, s.maxEvent)])
			s.bigResult(data, mode, e[max(0, len(e)-s.tailBytes):])
			return fwd
		}
		if s.inspect(p[ev:end], cr) {
			if s.dropNull {
				s.write(p[fwd:ev])
				s.write(s.withoutNullUsage(p[ev:end]))
				return end
			}
			return fwd
		}
		s.write(p[fwd:ev])
		if s.crEvent {
			s.crDrop = true
		}
		return end
	}
}

// hold writes the run of complete events and keeps p[ev:], the start of the
// unfinished event, or passes it through once it is too big to keep.
func (s *Stream) hold(p []byte, fwd, ev int) {
	rest := p[ev:]
	switch {
	case s.big:
		s.bigTail = appendWindow(s.bigTail, rest, s.tailBytes)
		s.write(p[fwd:])
	case len(s.pending)+len(rest) > s.maxEvent:
		s.write(p[fwd:ev])
		s.beginBig(s.pending, rest)
		s.pending = s.pending[:0]
		s.bigTail = appendWindow(s.bigTail, rest, s.tailBytes)
		s.write(rest)
	default:
		s.write(p[fwd:ev])
		s.pending = append(s.pending, rest...)
	}
}

// beginBig switches to passing the current event through: it reads the
// event's head (held, then more) for its kind, forwards held and starts the
// tail window with it. The caller feeds and forwards more.
func (s *Stream) beginBig(held, more []byte) {
	n := min(s.headBytes, s.maxEvent)
	head := held
	if len(held) < n {
		s.scratch = append(append(s.scratch[:0], held...), more[:min(n-len(held), len(more))]...)
		head = s.scratch
	}
	s.bigData, s.bigMode = s.bigMeta(head[:min(len(head), n)])
	s.write(held)
	s.bigTail = appendWindow(s.bigTail[:0], held, s.tailBytes)
	s.big = true
}

// finishBig ends a passed-through event, searching exactly the last
// tailBytes of it (not the window's slack) for usage.
func (s *Stream) finishBig() {
	s.big = false
	tail := s.bigTail
	if len(tail) > s.tailBytes {
		tail = tail[len(tail)-s.tailBytes:]
	}
	s.bigResult(s.bigData, s.bigMode, tail)
}

// bigMeta reads the head of a passed-through event: whether it has a data
// line and where its usage may be. The head's last line may be cut short.
func (s *Stream) bigMeta(head []byte) (bool, bigMode) {
	if !s.started {
		s.started = true
		head = bytes.TrimPrefix(head, bom)
	}
	var data, typ []byte
	hasData := false
	for len(head) > 0 {
		var line []byte
		line, head = nextLine(head, true)
		if len(line) == 0 {
			break
		}
		switch name, value := field(line); string(name) {
		case "data":
			if !hasData {
				hasData, data = true, value
			}
		case "event":
			typ = value
		}
	}
	if !hasData {
		return false, bigNoUsage
	}
	if s.kind != KindResponses {
		return true, bigChunk
	}
	t := view(typ)
	if t == "" {
		// Only the fast form: the head is cut, so no parser can be trusted.
		t = typePrefix(data)
	}
	if isTerminal(t) {
		return true, bigTerminal
	}
	return true, bigNoUsage
}

// bigResult accounts for a passed-through event given its tail (which does
// not include the blank line that ended it).
func (s *Stream) bigResult(hasData bool, mode bigMode, tail []byte) {
	if !hasData {
		return
	}
	s.events++
	depth := 1
	switch mode {
	case bigNoUsage:
		return
	case bigTerminal:
		s.done = true
		depth = 2 // {"type":…,"response":{…,"usage":{…}}}
	}
	if obj, ok := lastUsageObject(tail, depth); ok {
		if u, ok := usageFromObject(obj, s.kind); ok {
			s.usage = u
		}
	}
}

// inspect reads one complete event (or, at Close, a remainder of complete
// lines) and reports whether to forward it. cr is false when ev is known to
// hold no CR.
func (s *Stream) inspect(ev []byte, cr bool) bool {
	if !s.started {
		s.started = true
		ev = bytes.TrimPrefix(ev, bom)
	}
	var data, typ []byte
	nData := 0
	for len(ev) > 0 {
		var line []byte
		line, ev = nextLine(ev, cr)
		if len(line) == 0 {
			break
		}
		switch name, value := field(line); string(name) {
		case "data":
			// Multi-line data is joined with "\n" (WHATWG SSE); the usual
			// single line is used in place.
			nData++
			switch nData {
			case 1:
				data = value
			case 2:
				s.scratch = append(append(append(s.scratch[:0], data...), '\n'), value...)
				data = s.scratch
			default:
				s.scratch = append(append(s.scratch, '\n'), value...)
				data = s.scratch
			}
		case "event":
			typ = value
		}
	}
	if nData == 0 {
		return true // comments, retry:, stray blank lines
	}
	var keep bool
	if s.kind == KindResponses {
		keep = s.responsesData(typ, data)
	} else {
		keep = s.chunkData(data)
	}
	if keep {
		s.events++
	}
	return keep
}

// usageNull is what every chunk carries once include_usage is on.
var usageNull = []byte(`"usage":null`)

// withoutNullUsage returns ev with its "usage":null member (and the comma
// that joined it) removed, in a reused buffer.
func (s *Stream) withoutNullUsage(ev []byte) []byte {
	s.dropNull = false
	i := bytes.Index(ev, usageNull)
	if i < 0 {
		return ev
	}
	start, end := i, i+len(usageNull)
	switch {
	case start > 0 && ev[start-1] == ',':
		start--
	case end < len(ev) && ev[end] == ',':
		end++
	}
	s.rewritten = append(append(s.rewritten[:0], ev[:start]...), ev[end:]...)
	return s.rewritten
}

// chunkData handles the data of a chat or legacy completions event.
func (s *Stream) chunkData(data []byte) bool {
	if len(data) < 16 && bytes.Equal(bytes.TrimSpace(data), doneData) {
		s.done = true
		return true
	}
	if s.opts.KeepText {
		s.chunkText(data)
	}
	// Most chunks stop here: no usage, or Azure's "usage":null.
	if !hasUsageObject(data) {
		s.dropNull = s.opts.StripUsageChunk && bytes.Contains(data, usageNull)
		return true
	}
	js := view(data)
	if !gjson.Valid(js) {
		return true
	}
	u, ok := parseUsage(gjson.Get(js, "usage"), s.kind)
	if !ok {
		return true
	}
	s.usage = u
	// Only the usage-only chunk goes: Azure's first chunk also has
	// "choices":[] but no usage, and a chunk with choices carries content.
	strip := s.opts.StripUsageChunk && (s.kind == KindChat || s.kind == KindCompletions) &&
		isEmptyArray(gjson.Get(js, "choices").Raw)
	return !strip
}

// chunkText appends the generated text of a chat or completions chunk:
// choices[].text for legacy completions; for chat, choices[].delta content,
// refusal, reasoning_content (Foundry reasoning models) and tool call
// arguments, all of which are billed as completion tokens. It walks the
// chunk once and stops after "choices".
func (s *Stream) chunkText(data []byte) {
	if s.textFull {
		return
	}
	c := cursor{b: data}
	if !c.enter('{') {
		return
	}
	for k, ok := c.member(); ok; k, ok = c.member() {
		if string(k) != "choices" {
			c.value()
			continue
		}
		if !c.enter('[') {
			return
		}
		for c.elem() {
			if !c.enter('{') {
				c.value()
				continue
			}
			for ck, ok := c.member(); ok; ck, ok = c.member() {
				switch {
				case s.kind == KindCompletions && string(ck) == "text":
					s.appendText(c.value())
				case s.kind != KindCompletions && string(ck) == "delta":
					s.deltaText(&c)
				default:
					c.value()
				}
			}
		}
		return
	}
}

// deltaText consumes a chat delta object at c, appending its text.
func (s *Stream) deltaText(c *cursor) {
	if !c.enter('{') {
		c.value()
		return
	}
	for k, ok := c.member(); ok; k, ok = c.member() {
		switch string(k) {
		case "content", "refusal", "reasoning_content":
			s.appendText(c.value())
		case "function_call":
			s.argumentsText(c)
		case "tool_calls":
			if !c.enter('[') {
				c.value()
				continue
			}
			for c.elem() {
				if !c.enter('{') {
					c.value()
					continue
				}
				for tk, ok := c.member(); ok; tk, ok = c.member() {
					if string(tk) == "function" {
						s.argumentsText(c)
					} else {
						c.value()
					}
				}
			}
		default:
			c.value()
		}
	}
}

// argumentsText consumes a function (call) object at c, appending its
// arguments.
func (s *Stream) argumentsText(c *cursor) {
	if !c.enter('{') {
		c.value()
		return
	}
	for k, ok := c.member(); ok; k, ok = c.member() {
		if string(k) == "arguments" {
			s.appendText(c.value())
		} else {
			c.value()
		}
	}
}

// responsesData handles the data of a Responses API event. typ is the
// event: field, if any; the data's "type" says the same.
func (s *Stream) responsesData(typ, data []byte) bool {
	t := view(typ)
	if t == "" {
		t = typePrefix(data)
		if t == "" {
			t = gjson.Get(view(data), "type").Str
		}
	}
	switch {
	case isTerminal(t):
		s.done = true
		if js := view(data); gjson.Valid(js) {
			if u, ok := parseUsage(gjson.Get(js, "response.usage"), s.kind); ok {
				s.usage = u
			}
		}
	case s.opts.KeepText && isTextDelta(t):
		if d, ok := memberValue(data, "delta"); ok {
			s.appendText(d)
		}
	}
	return true
}

// isTerminal reports whether a Responses event type ends the stream; each
// carries the final response and its usage.
func isTerminal(t string) bool {
	return t == "response.completed" || t == "response.incomplete" || t == "response.failed"
}

// isTextDelta reports whether a Responses event type carries generated
// text in "delta".
func isTextDelta(t string) bool {
	switch t {
	case "response.output_text.delta", "response.refusal.delta",
		"response.function_call_arguments.delta",
		"response.reasoning_summary_text.delta", "response.reasoning_text.delta":
		return true
	}
	return false
}

var typeFieldPrefix = []byte(`{"type":"`)

// typePrefix returns the type of data in OpenAI's compact form
// {"type":"…", without parsing; "" when data does not start that way.
func typePrefix(data []byte) string {
	if !bytes.HasPrefix(data, typeFieldPrefix) {
		return ""
	}
	rest := data[len(typeFieldPrefix):]
	k := bytes.IndexByte(rest, '"')
	if k < 0 || bytes.IndexByte(rest[:k], '\\') >= 0 {
		return ""
	}
	return view(rest[:k])
}

// appendText adds a JSON string's text to s.text, up to s.textBytes, cut on
// a UTF-8 boundary.
func (s *Stream) appendText(raw []byte) {
	if s.textFull || len(raw) < 2 || raw[0] != '"' {
		return
	}
	s.text = appendJSONString(s.text, raw)
	if len(s.text) >= s.textBytes {
		// Full: later text must not fill the bytes freed by the cut.
		s.textFull = true
		n := min(len(s.text), s.textBytes)
		for n < len(s.text) && n > 0 && !utf8.RuneStart(s.text[n]) {
			n--
		}
		s.text = s.text[:n]
	}
}

// write forwards b to dst unless an earlier write failed.
func (s *Stream) write(b []byte) {
	if len(b) == 0 || s.err != nil {
		return
	}
	n, err := s.dst.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	s.err = err
}

// Close ends the stream: it forwards whatever is held (a cut stream may end
// mid-event). A remainder made of complete lines is read like an event, so
// a usage chunk or [DONE] that lost only its final blank line still counts;
// one cut mid-line is forwarded unread. Close does not close dst. It returns
// the first dst write error, if any.
func (s *Stream) Close() error {
	if s.closed {
		return s.err
	}
	s.closed = true
	switch {
	case s.big:
		if s.lineStart {
			s.finishBig()
		}
		s.big = false
	case len(s.pending) > 0:
		if !s.lineStart || s.inspect(s.pending, true) {
			s.write(s.pending)
		}
		s.pending = s.pending[:0]
	}
	return s.err
}

// Usage returns the usage the stream reported so far: for chat and
// completions the last non-null "usage" of a data event; for Responses the
// "response.usage" of response.completed, response.incomplete or
// response.failed. Reported is false when none arrived.
func (s *Stream) Usage() Usage { return s.usage }

// Events returns the number of data events forwarded, [DONE] included and
// stripped usage chunks excluded. Events after a failed dst write are
// counted although no longer written.
func (s *Stream) Events() int { return s.events }

// SawDone reports whether the stream ended properly: data: [DONE] for chat
// and completions, a terminal event (response.completed, .incomplete or
// .failed) for Responses. False means the stream was cut.
func (s *Stream) SawDone() bool { return s.done }

// Text returns the generated text kept with KeepText (at most 256 KiB), for
// estimating the usage of a stream that was cut before reporting it.
func (s *Stream) Text() string { return string(s.text) }

// nextLine splits off the first line of b (terminator "\n", "\r\n" or "\r"
// removed); the last line may have no terminator. cr is false when b is
// known to hold no CR.
func nextLine(b []byte, cr bool) (line, rest []byte) {
	k := lineEnd(b, cr)
	if k < 0 {
		return b, nil
	}
	line = b[:k]
	if b[k] == '\r' && k+1 < len(b) && b[k+1] == '\n' {
		k++
	}
	return line, b[k+1:]
}

// lineEnd returns the index of the first CR or LF in b, or -1. IndexByte
// (vectorised) beats a byte loop; the CR search is skipped when b is known
// to hold none (cr false) and is limited to the bytes before the first LF.
func lineEnd(b []byte, cr bool) int {
	n := bytes.IndexByte(b, '\n')
	if !cr {
		return n
	}
	lim := n
	if n < 0 {
		lim = len(b)
	}
	if r := bytes.IndexByte(b[:lim], '\r'); r >= 0 {
		return r
	}
	return n
}

// field splits an SSE line into field name and value ("data: x" → "data",
// "x"; one leading space is removed). A comment line has an empty name.
func field(line []byte) (name, value []byte) {
	c := bytes.IndexByte(line, ':')
	if c < 0 {
		return line, nil
	}
	name, value = line[:c], line[c+1:]
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	return name, value
}
