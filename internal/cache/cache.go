package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/tee"
	"github.com/foundry-gateway/gateway/internal/usage"
)

// Response headers.
const (
	// Header is hit, miss or bypass on every response of a cached model.
	// A client sends "x-gateway-cache: bypass" to skip the cache.
	Header = "X-Gateway-Cache"
	// HeaderKind is exact or semantic on a hit.
	HeaderKind = "X-Gateway-Cache-Kind"
	// HeaderScore is the APIM-style score (1 − cosine) of a semantic hit.
	HeaderScore = "X-Gateway-Cache-Score"
)

// Statuses of a lookup (the Header value).
const (
	Hit    = "hit"
	Miss   = "miss"
	Bypass = "bypass"
)

// maxEmbedText caps the prompt text that is embedded; longer prompts are
// cached exactly only (embedding models take about 8k tokens).
const maxEmbedText = 16 << 10

// semanticRules are the semantic config's request rules.
type semanticRules struct {
	allowTools, allowSampling, ignoreSystem bool
}

// Embedder embeds text with the embedding alias; the caller routes,
// meters and records that call.
type Embedder func(ctx context.Context, alias, text string) ([]float32, error)

// Call is what a lookup needs of a call.
type Call struct {
	Req    openai.Request
	Body   []byte
	Header http.Header
	Team   string
	KeyID  string
}

// Cache is the response cache. Safe for concurrent use.
type Cache struct {
	cfg     config.CacheConfig
	entries store.Table
	idx     *index
	mem     *lru
	log     *slog.Logger
	now     func() time.Time
	writes  sync.WaitGroup
	sem     chan struct{} // bounds background table writes
}

// OpenTables opens (creating) the cache's tables with the store's prefix.
func OpenTables(ctx context.Context, st store.Store, prefix string) (entries, vectors store.Table, err error) {
	if entries, err = st.Table(ctx, prefix+EntriesTable); err != nil {
		return nil, nil, fmt.Errorf("cache: open %s: %w", prefix+EntriesTable, err)
	}
	if vectors, err = st.Table(ctx, prefix+VectorsTable); err != nil {
		return nil, nil, fmt.Errorf("cache: open %s: %w", prefix+VectorsTable, err)
	}
	return entries, vectors, nil
}

// New returns a cache over its two tables. now may be nil (time.Now).
func New(cfg config.CacheConfig, entries, vectors store.Table, log *slog.Logger, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{cfg: cfg, entries: entries, log: log, now: now, mem: newLRU(cfg.MemoryBytes),
		idx: &index{parts: map[string]*partIndex{}, t: vectors, cap: cfg.Semantic.IndexEntries, refresh: 30 * time.Second},
		sem: make(chan struct{}, 64)}
}

// cacheable ops: those whose answer is a JSON document (or its stream).
func cacheable(op openai.Op) bool {
	return op == openai.OpChat || op == openai.OpCompletions || op == openai.OpResponses || op == openai.OpEmbeddings
}

// policy is the model's cache policy for team, or nil when not cached.
func (c *Cache) policy(model, team string) *config.CacheModel {
	m, ok := c.cfg.Models[model]
	if !ok || len(m.Teams) > 0 && !slices.Contains(m.Teams, team) {
		return nil
	}
	return &m
}

// partition is the caller's cache partition.
func (c *Cache) partition(team, keyID string) string {
	switch c.cfg.Partition {
	case config.CachePartitionGlobal:
		return "*"
	case config.CachePartitionKey:
		return "key:" + keyID
	}
	return "team:" + team
}

// Lookup is one call's dealing with the cache: a hit to serve, or a miss
// whose answer may be stored (Capture, then Store).
type Lookup struct {
	c *Cache
	// Status is hit, miss or bypass.
	Status string
	// Kind is exact or semantic on a hit.
	Kind string
	// Score is the semantic hit's score (1 − cosine similarity).
	Score float64
	// Entry is the hit.
	Entry *Entry
	// Why says why a call was not looked up or not semantic (logs).
	Why string

	op      openai.Op
	stream  bool
	usage   bool // stream_options.include_usage
	pk, key string
	model   string
	ttl     time.Duration
	store   bool
	vector  *indexed
	cap     *tee.Writer
}

// Lookup looks c up. It returns nil when the model is not cached for the
// caller's team or the operation cannot be cached. embed may be nil (no
// semantic lookup). A failing table or embedding call is a miss, logged.
func (c *Cache) Lookup(ctx context.Context, call Call, embed Embedder) *Lookup {
	pol := c.policy(call.Req.Model, call.Team)
	if pol == nil || !cacheable(call.Req.Op) || call.Req.ContentType != "" {
		return nil
	}
	l := &Lookup{c: c, Status: Bypass, op: call.Req.Op, stream: call.Req.Stream, usage: call.Req.IncludeUsage,
		model: call.Req.Model, ttl: pol.TTL.D()}
	if l.ttl == 0 {
		l.ttl = c.cfg.TTL.D()
	}
	refresh := false
	switch bypassOf(call.Header) {
	case "bypass":
		l.Why = "client asked to bypass"
		return l
	case "refresh":
		refresh = true
	}
	if call.Req.PreviousResponseID != "" || background(call.Body) {
		l.Why = "stateful Responses call"
		return l
	}
	part := c.partition(call.Team, call.KeyID)
	r, err := parse(part, call.Req, call.Body, semanticRules{c.cfg.Semantic.AllowTools, c.cfg.Semantic.AllowSampling, c.cfg.Semantic.IgnoreSystemMessages})
	if err != nil {
		l.Why = err.Error()
		return l
	}
	l.Status, l.store, l.pk, l.key = Miss, true, partitionKey(part, call.Req.Model), r.key
	if refresh {
		l.Why = "client asked for a fresh answer (Cache-Control: no-cache)"
		return l
	}
	now := c.now()
	if e := c.get(ctx, l.pk, r.key, now); e != nil {
		l.Status, l.Kind, l.Entry = Hit, config.CacheExact, e
		return l
	}
	if pol.Mode != config.CacheSemantic || embed == nil {
		return l
	}
	if !r.semantic || len(r.text) > maxEmbedText {
		l.Why = "not semantic: " + r.why
		if len(r.text) > maxEmbedText {
			l.Why = "not semantic: prompt too long"
		}
		return l
	}
	fv, err := embed(ctx, c.cfg.Semantic.EmbeddingModel, r.text)
	if err != nil {
		c.log.Warn("cache: embedding failed; semantic lookup skipped", "model", call.Req.Model, "error", err)
		return l
	}
	v, err := quantise(fv)
	if err != nil {
		c.log.Warn("cache: embedding unusable; semantic lookup skipped", "model", call.Req.Model, "error", err)
		return l
	}
	l.vector = &indexed{key: r.key, variant: r.variant, v: v}
	key, sim, err := c.idx.search(ctx, l.pk, r.variant, v, now)
	if err != nil {
		c.log.Warn("cache: vector index load failed", "partition", l.pk, "error", err)
		return l
	}
	if key == "" || 1-sim > c.cfg.Semantic.ScoreThreshold {
		return l
	}
	if e := c.get(ctx, l.pk, key, now); e != nil {
		l.Status, l.Kind, l.Entry, l.Score = Hit, config.CacheSemantic, e, max(1-sim, 0)
		l.store = false
		return l
	}
	c.idx.forget(l.pk, key)
	return l
}

// bypassOf reads the client's cache headers: "bypass" (x-gateway-cache:
// bypass, or Cache-Control: no-store: neither read nor write), "refresh"
// (Cache-Control: no-cache: do not serve from the cache, store the fresh
// answer) or "".
func bypassOf(h http.Header) string {
	if strings.EqualFold(strings.TrimSpace(h.Get(Header)), Bypass) {
		return "bypass"
	}
	out := ""
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			switch strings.ToLower(strings.TrimSpace(d)) {
			case "no-store":
				return "bypass"
			case "no-cache":
				out = "refresh"
			}
		}
	}
	return out
}

// background reports a Responses API background call (answered later).
func background(body []byte) bool {
	var b struct {
		Background bool `json:"background"`
	}
	_ = json.Unmarshal(body, &b)
	return b.Background
}

// get reads an unexpired entry: memory first, then the table.
func (c *Cache) get(ctx context.Context, pk, rk string, now time.Time) *Entry {
	mk := pk + "\x00" + rk
	if e := c.mem.get(mk); e != nil {
		if e.Expires.After(now) {
			return e
		}
		c.mem.drop(mk)
		return nil
	}
	en, err := c.entries.Get(ctx, pk, rk)
	if err != nil {
		if !isNotFound(err) {
			c.log.Warn("cache: read failed", "partition", pk, "error", err)
		}
		return nil
	}
	e, err := entryFrom(en)
	if err != nil {
		c.log.Warn("cache: unreadable entry", "error", err)
		return nil
	}
	if !e.Expires.After(now) {
		c.background(func(ctx context.Context) error { return c.entries.Delete(ctx, pk, rk, en.ETag) })
		return nil
	}
	c.mem.put(mk, e)
	return e
}

// SetHeaders sets the cache headers of the response.
func (l *Lookup) SetHeaders(h http.Header) {
	h.Set(Header, l.Status)
	if l.Status == Hit {
		h.Set(HeaderKind, l.Kind)
		if l.Kind == config.CacheSemantic {
			h.Set(HeaderScore, strconv.FormatFloat(l.Score, 'f', 4, 64))
		}
	}
}

// Serve writes the hit: the stored JSON, or its SSE replay when the
// client asked to stream.
func (l *Lookup) Serve(w http.ResponseWriter) error {
	l.SetHeaders(w.Header())
	if !l.stream {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(l.Entry.Body)))
		w.WriteHeader(http.StatusOK)
		_, err := w.Write(l.Entry.Body)
		return err
	}
	// Build the stream first: a stored body that cannot be replayed is an
	// error before anything is sent.
	var buf bytes.Buffer
	if err := replay(&buf, l.op, l.Entry.Body, l.usage); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(buf.Bytes())
	if err == nil {
		if ferr := http.NewResponseController(w).Flush(); !errors.Is(ferr, http.ErrNotSupported) {
			err = ferr
		}
	}
	return err
}

// Capture wraps the client's writer on a miss that may be stored: the
// answer is copied (up to the entry limit) as it is written.
func (l *Lookup) Capture(w http.ResponseWriter) http.ResponseWriter {
	if l == nil || !l.store {
		return w
	}
	l.SetHeaders(w.Header())
	// A stream is larger than the answer assembled from it: allow it 4×.
	l.cap = tee.New(w, 4*l.c.cfg.MaxEntryBytes)
	return l.cap
}

// Result is how the backend call went (from the proxy's result).
type Result struct {
	Status              int
	Complete            bool
	Usage               usage.Usage
	Backend, Deployment string
}

// Store keeps the captured answer when it is a complete 200 with reported
// usage within the size limit. The entry is in this instance's memory and
// index at once; the table writes happen in the background.
func (l *Lookup) Store(res Result) {
	if l == nil || l.cap == nil || res.Status != http.StatusOK || !res.Complete || !res.Usage.Reported {
		return
	}
	body, truncated := l.cap.Bytes()
	if truncated {
		return
	}
	if isSSE(l.cap.Header().Get("Content-Type")) {
		b, err := assemble(l.op, body, res.Usage)
		if err != nil {
			l.c.log.Debug("cache: stream not stored", "error", err)
			return
		}
		body = b
	}
	if len(body) == 0 || len(body) > l.c.cfg.MaxEntryBytes || !json.Valid(body) {
		return
	}
	now := l.c.now()
	e := &Entry{Body: bytes.Clone(body), Usage: res.Usage, Op: string(l.op), Model: l.model,
		Backend: res.Backend, Deployment: res.Deployment, Created: now, Expires: now.Add(l.ttl)}
	c := l.c
	c.mem.put(l.pk+"\x00"+l.key, e)
	pk, key, vect := l.pk, l.key, l.vector
	if vect != nil {
		vect.created, vect.expires = now, e.Expires
		c.idx.insert(pk, *vect)
	}
	c.background(func(ctx context.Context) error {
		if _, err := c.entries.Upsert(ctx, e.entity(pk, key)); err != nil {
			return err
		}
		if vect != nil {
			_, err := c.idx.t.Upsert(ctx, vectorEntity(pk, *vect))
			return err
		}
		return nil
	})
}

// background runs a table write off the request path; when 64 are
// already running it is skipped (the entry stays in this instance's
// memory).
func (c *Cache) background(fn func(ctx context.Context) error) {
	select {
	case c.sem <- struct{}{}:
	default:
		c.log.Debug("cache: write skipped, too many in flight")
		return
	}
	c.writes.Add(1)
	go func() {
		defer c.writes.Done()
		defer func() { <-c.sem }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := fn(ctx); err != nil {
			c.log.Warn("cache: table write failed", "error", err)
		}
	}()
}

// Close waits for the background table writes (or ctx).
func (c *Cache) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() { c.writes.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func isSSE(ct string) bool {
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "text/event-stream")
}
