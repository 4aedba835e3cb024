package telemetry

import (
	"context"
	"log/slog"
)

// LogHandler returns a handler that passes every record to next and also
// records WARN and ERROR records as Application Insights trace items
// (issue 8: "traces for warnings and errors"). Attributes become
// properties, resolved first so secrets that implement [slog.LogValuer]
// stay redacted; a trace_id attribute puts the item in that operation.
// Recording never blocks (see [Client.TrackTrace]). With a nil Client it
// returns next.
func LogHandler(next slog.Handler, c *Client) slog.Handler {
	if c == nil {
		return next
	}
	return &logHandler{next: next, c: c}
}

type logHandler struct {
	next  slog.Handler
	c     *Client
	attrs []slog.Attr // from WithAttrs, already prefixed by their groups
	group string      // "a.b." for WithGroup("a").WithGroup("b")
}

// Enabled implements [slog.Handler]: next's level decides.
func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle implements [slog.Handler].
func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.next.Handle(ctx, r)
	if r.Level < slog.LevelWarn {
		return err
	}
	props := map[string]string{"level": r.Level.String()}
	var tr Trace
	var add func(prefix string, a slog.Attr)
	add = func(prefix string, a slog.Attr) {
		v := a.Value.Resolve()
		if v.Kind() == slog.KindGroup {
			for _, g := range v.Group() {
				add(prefix+a.Key+".", g)
			}
			return
		}
		k := prefix + a.Key
		if k == "trace_id" {
			tr.TraceID = v.String()
		}
		props[k] = v.String()
	}
	for _, a := range h.attrs {
		add("", a)
	}
	r.Attrs(func(a slog.Attr) bool { add(h.group, a); return true })
	h.c.TrackTrace(r.Message, r.Level < slog.LevelError, tr, props)
	return err
}

// WithAttrs implements [slog.Handler].
func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.next = h.next.WithAttrs(as)
	h2.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range as {
		h2.attrs = append(h2.attrs, slog.Attr{Key: h.group + a.Key, Value: a.Value})
	}
	return &h2
}

// WithGroup implements [slog.Handler].
func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.next = h.next.WithGroup(name)
	h2.group = h.group + name + "."
	return &h2
}
