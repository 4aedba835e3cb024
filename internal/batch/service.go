package batch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/foundry-gateway/gateway/internal/blob"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/jobs"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/tidwall/gjson"
)

// Blobs holds file contents (blob.Dir or blob.Azure).
type Blobs interface {
	Put(ctx context.Context, name string, data []byte) error
	Get(ctx context.Context, name string) ([]byte, error)
	Delete(ctx context.Context, name string) error
}

// Lines runs the lines of batches as low-priority jobs.
type Lines interface {
	// Submit queues one line; with Submission.ID set it is idempotent.
	Submit(ctx context.Context, s jobs.Submission) (*jobs.Job, error)
	// Range lists the jobs with ids in [from, to), in id order.
	Range(ctx context.Context, keyID, from, to string, limit int) ([]*jobs.Job, error)
	// Cancel cancels a queued job (jobs.ErrConflict once it runs).
	Cancel(ctx context.Context, keyID, id string) (*jobs.Job, error)
}

// Options tune the service. Zero values take the defaults noted.
type Options struct {
	// MaxFileBytes is the largest upload. Default 200 MiB.
	MaxFileBytes int64
	// MaxLines is the most lines a batch may hold. Default 50,000.
	MaxLines int
	// FileRetention: files without expires_after, and output and error
	// files, expire after it. Default 30 days.
	FileRetention time.Duration
	// AdvanceBudget bounds one Advance. Default 30s.
	AdvanceBudget time.Duration
	// Runnable, when set, says whether a model's lines may run as jobs
	// (an *httperr.Error says why not; it goes to the error file).
	Runnable func(model string) error
	Now      func() time.Time
	Log      *slog.Logger
}

// Service is the Batch API.
type Service struct {
	files, batches store.Table
	blobs          Blobs
	lines          Lines
	opt            Options

	mu        sync.Mutex // one Advance at a time
	lastSweep time.Time
	queueing  atomic.Bool // an Advance is queueing lines
}

// Queueing reports whether an Advance is queueing lines right now: the
// drain timer keeps draining while it does (see Every).
func (s *Service) Queueing() bool { return s.queueing.Load() }

// New builds the service on its two tables, the blob container and the jobs.
func New(files, batches store.Table, blobs Blobs, lines Lines, opt Options) *Service {
	if opt.MaxFileBytes <= 0 {
		opt.MaxFileBytes = 200 << 20
	}
	if opt.MaxLines <= 0 {
		opt.MaxLines = 50000
	}
	if opt.FileRetention <= 0 {
		opt.FileRetention = 30 * 24 * time.Hour
	}
	if opt.AdvanceBudget <= 0 {
		opt.AdvanceBudget = 30 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{files: files, batches: batches, blobs: blobs, lines: lines, opt: opt}
}

// MaxFileBytes is the largest upload the service takes.
func (s *Service) MaxFileBytes() int64 { return s.opt.MaxFileBytes }

func (s *Service) now() time.Time { return s.opt.Now().UTC().Truncate(time.Millisecond) }

func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func unavailable(err error, what string) error {
	return httperr.Wrap(err, http.StatusServiceUnavailable, "storage_unavailable", "The gateway cannot "+what+" right now. Retry shortly.")
}

func fileNotFound(id string) error {
	return &httperr.Error{Status: http.StatusNotFound, Code: "file_not_found", Param: "file_id", Msg: "No file with id '" + id + "' for this caller."}
}

// Upload stores a file: its content in blob storage first, then its row.
// expiresAfter 0 keeps it for the retention period.
func (s *Service) Upload(ctx context.Context, keyID, filename, purpose string, data []byte, expiresAfter time.Duration) (*File, error) {
	if purpose != PurposeBatch {
		return nil, &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "purpose",
			Msg: "This gateway stores files for the Batch API only: purpose must be 'batch'."}
	}
	if int64(len(data)) > s.opt.MaxFileBytes {
		return nil, httperr.New(http.StatusRequestEntityTooLarge, "file_too_large",
			"The file is larger than the "+strconv.FormatInt(s.opt.MaxFileBytes, 10)+" bytes a batch input file may have.")
	}
	if len(data) == 0 {
		return nil, &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "file", Msg: "The file is empty."}
	}
	if expiresAfter == 0 {
		expiresAfter = s.opt.FileRetention
	}
	now := s.now()
	f := &File{ID: newID("file-"), KeyID: keyID, Filename: filename, Purpose: purpose, Bytes: int64(len(data)), CreatedAt: now,
		ExpiresAt: now.Add(expiresAfter)}
	if err := s.blobs.Put(ctx, f.ID, data); err != nil {
		return nil, unavailable(err, "store the file")
	}
	if _, err := s.files.Insert(ctx, fileEntity(f)); err != nil {
		_ = s.blobs.Delete(context.WithoutCancel(ctx), f.ID)
		return nil, unavailable(err, "record the file")
	}
	return f, nil
}

// File reads one of keyID's files; an expired file is gone.
func (s *Service) File(ctx context.Context, keyID, id string) (*File, error) {
	e, err := s.files.Get(ctx, keyID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fileNotFound(id)
	}
	if err != nil {
		return nil, unavailable(err, "read the file")
	}
	f := fileFrom(e)
	if !f.ExpiresAt.IsZero() && !s.now().Before(f.ExpiresAt) {
		return nil, fileNotFound(id)
	}
	return f, nil
}

// Content returns a file's bytes.
func (s *Service) Content(ctx context.Context, keyID, id string) (*File, []byte, error) {
	f, err := s.File(ctx, keyID, id)
	if err != nil {
		return nil, nil, err
	}
	b, err := s.blobs.Get(ctx, f.ID)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, nil, fileNotFound(id)
	}
	if err != nil {
		return nil, nil, unavailable(err, "read the file")
	}
	return f, b, nil
}

// Files lists keyID's live files, newest first, optionally of one purpose.
func (s *Service) Files(ctx context.Context, keyID, purpose string) ([]*File, error) {
	es, err := s.files.Query(ctx, store.Query{PartitionKey: keyID})
	if err != nil {
		return nil, unavailable(err, "list files")
	}
	now := s.now()
	var out []*File
	for _, e := range es {
		f := fileFrom(e)
		if (!f.ExpiresAt.IsZero() && !now.Before(f.ExpiresAt)) || (purpose != "" && f.Purpose != purpose) {
			continue
		}
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// DeleteFile deletes a file: its row, then its content.
func (s *Service) DeleteFile(ctx context.Context, keyID, id string) error {
	if _, err := s.File(ctx, keyID, id); err != nil {
		return err
	}
	if err := s.files.Delete(ctx, keyID, id, "*"); err != nil && !errors.Is(err, store.ErrNotFound) {
		return unavailable(err, "delete the file")
	}
	if err := s.blobs.Delete(ctx, id); err != nil && !errors.Is(err, blob.ErrNotFound) {
		s.opt.Log.Warn("batch: delete file content", "file", id, "error", err)
	}
	return nil
}

// Caller is who creates a batch: its lines run as this caller's jobs.
type Caller struct {
	KeyID, Team, App string
	// Regions the lines may be served from (the caller's scope).
	Regions []string
}

// Check validates one line's body for the caller (scope, model, caps) and
// returns the parsed request and the body to send (caps may clamp it). An
// *httperr.Error's code and message go to the error file.
type Check func(ctx context.Context, op openai.Op, body []byte) (openai.Request, []byte, error)

// CreateRequest is POST /batches.
type CreateRequest struct {
	InputFileID      string            `json:"input_file_id"`
	Endpoint         string            `json:"endpoint"`
	CompletionWindow string            `json:"completion_window"`
	Metadata         map[string]string `json:"metadata"`
	// OutputExpiresAfter: {anchor: created_at, seconds}.
	OutputExpiresAfter *struct {
		Anchor  string `json:"anchor"`
		Seconds int64  `json:"seconds"`
	} `json:"output_expires_after"`
}

func badParam(param, msg string) error {
	return &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: param, Msg: msg}
}

// maxListedErrors caps the line errors kept on the batch row (all of them
// are in the error file).
const maxListedErrors = 50

// Create validates the input file line by line and records the batch
// (status validating); Advance queues its valid lines. Lines that fail
// validation go to the error file; the rest run.
func (s *Service) Create(ctx context.Context, c Caller, req CreateRequest, check Check) (*Batch, error) {
	if req.InputFileID == "" {
		return nil, badParam("input_file_id", "input_file_id is required.")
	}
	op, ok := opOf(req.Endpoint)
	if !ok {
		return nil, badParam("endpoint", "endpoint must be /v1/chat/completions, /v1/completions, /v1/embeddings or /v1/responses.")
	}
	if req.CompletionWindow != "24h" {
		return nil, badParam("completion_window", "completion_window must be 24h.")
	}
	if len(req.Metadata) > 16 {
		return nil, badParam("metadata", "metadata holds at most 16 pairs.")
	}
	var outExpiry time.Duration
	if o := req.OutputExpiresAfter; o != nil {
		if o.Anchor != "created_at" || o.Seconds < 3600 || o.Seconds > 30*24*3600 {
			return nil, badParam("output_expires_after", "output_expires_after needs anchor created_at and seconds between 3600 and 2592000.")
		}
		outExpiry = time.Duration(o.Seconds) * time.Second
	}
	f, data, err := s.Content(ctx, c.KeyID, req.InputFileID)
	var he *httperr.Error
	if errors.As(err, &he) && he.Status == http.StatusNotFound {
		return nil, &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "input_file_id",
			Msg: "No file with id '" + req.InputFileID + "' for this caller."}
	}
	if err != nil {
		return nil, err
	}
	if f.Purpose != PurposeBatch {
		return nil, badParam("input_file_id", "The input file must have purpose 'batch'.")
	}
	lines, model, err := s.validate(ctx, data, op, check)
	if err != nil {
		return nil, err
	}
	now := s.now()
	b := &Batch{ID: newID("batch_"), KeyID: c.KeyID, Team: c.Team, App: c.App, Regions: c.Regions, Endpoint: req.Endpoint,
		InputFileID: f.ID, CompletionWindow: req.CompletionWindow, Model: model, Status: StatusValidating,
		CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour), Lines: len(lines), Metadata: req.Metadata, OutputExpiresAfter: outExpiry}
	for i, l := range lines {
		if l.Code == "" {
			continue
		}
		b.Invalid++
		if len(b.Errors) < maxListedErrors {
			n := int64(i + 1)
			b.Errors = append(b.Errors, LineError{Code: l.Code, Message: truncate(l.Msg, 300), Line: &n})
		}
	}
	b.Failed = b.Invalid
	// The validated lines first, then the index row Advance finds the
	// batch by, then the batch: a crash in between leaves an orphan blob
	// or an index row without a batch, which Advance removes.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, l := range lines {
		_ = enc.Encode(l)
	}
	if err := s.blobs.Put(ctx, linesBlob(b.ID), buf.Bytes()); err != nil {
		return nil, unavailable(err, "store the batch")
	}
	if _, err := s.batches.Upsert(ctx, store.Entity{PartitionKey: activePartition, RowKey: b.ID,
		Props: map[string]any{"KeyID": b.KeyID, "CreatedAt": now}}); err != nil {
		return nil, unavailable(err, "record the batch")
	}
	etag, err := s.batches.Insert(ctx, batchEntity(b))
	if err != nil {
		return nil, unavailable(err, "record the batch")
	}
	b.etag = etag
	return b, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// activePartition holds one row per unfinished batch (RowKey the batch
// id, KeyID its owner), so Advance finds them with one partition query.
const activePartition = "~active"

func linesBlob(batchID string) string { return batchID + "/lines.jsonl" }

// inputLine is one line of a batch input file.
type inputLine struct {
	CustomID *string         `json:"custom_id"`
	Method   string          `json:"method"`
	URL      string          `json:"url"`
	Body     json.RawMessage `json:"body"`
}

// validate checks every line: JSON, custom_id present and unique, method
// POST, url matching the batch's endpoint, and the body for the caller
// (check). It returns the lines and the first valid line's model.
func (s *Service) validate(ctx context.Context, data []byte, op openai.Op, check Check) ([]line, string, error) {
	var out []line
	seen := map[string]bool{}
	model := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), int(s.opt.MaxFileBytes)+1)
	for sc.Scan() {
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		if len(out) >= s.opt.MaxLines {
			return nil, "", badParam("input_file_id", fmt.Sprintf("The input file has more than %d requests, the most one batch may hold.", s.opt.MaxLines))
		}
		var in inputLine
		l := line{}
		if err := json.Unmarshal(raw, &in); err != nil {
			// Best effort: a line cut short may still name its custom_id.
			l.CustomID = gjson.GetBytes(raw, "custom_id").String()
			l.Code, l.Msg = "invalid_json_line", "This line is not valid JSON: "+err.Error()
			out = append(out, l)
			continue
		}
		if in.CustomID != nil {
			l.CustomID = *in.CustomID
		}
		switch lop, ok := opOf(in.URL); {
		case in.CustomID == nil || *in.CustomID == "":
			l.Code, l.Msg = "missing_required_parameter", "custom_id is required."
		case seen[l.CustomID]:
			l.Code, l.Msg = "duplicate_custom_id", "The custom_id "+strconv.Quote(l.CustomID)+" is used by an earlier line; custom_id must be unique within a batch."
		case in.Method != http.MethodPost:
			l.Code, l.Msg = "invalid_method", "method must be POST."
		case !ok || lop != op:
			l.Code, l.Msg = "mismatched_endpoint", "The url "+strconv.Quote(in.URL)+" does not match the batch's endpoint; every line must call it."
		case len(in.Body) == 0 || in.Body[0] != '{':
			l.Code, l.Msg = "invalid_request", "body must be a JSON object."
		default:
			req, body, err := check(ctx, op, in.Body)
			if err == nil && s.opt.Runnable != nil {
				err = s.opt.Runnable(req.Model)
			}
			if err != nil {
				he := httperr.From(err)
				l.Code, l.Msg = he.Code, he.Msg
				if he.Status >= 500 {
					return nil, "", err // the gateway's trouble, not the line's
				}
			} else {
				l.Model, l.Body = req.Model, body
				if model == "" {
					model = req.Model
				}
			}
		}
		if l.CustomID != "" && l.Code != "duplicate_custom_id" {
			seen[l.CustomID] = true
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, "", badParam("input_file_id", "The input file cannot be read as JSONL: "+err.Error())
	}
	if len(out) == 0 {
		return nil, "", badParam("input_file_id", "The input file has no requests.")
	}
	return out, model, nil
}

func batchNotFound(id string) error {
	return &httperr.Error{Status: http.StatusNotFound, Code: "batch_not_found", Param: "batch_id", Msg: "No batch with id '" + id + "' for this caller."}
}

// Get reads one of keyID's batches.
func (s *Service) Get(ctx context.Context, keyID, id string) (*Batch, error) {
	if keyID == activePartition {
		return nil, batchNotFound(id)
	}
	e, err := s.batches.Get(ctx, keyID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, batchNotFound(id)
	}
	if err != nil {
		return nil, unavailable(err, "read the batch")
	}
	return batchFrom(e), nil
}

// List returns keyID's batches, newest first.
func (s *Service) List(ctx context.Context, keyID string) ([]*Batch, error) {
	es, err := s.batches.Query(ctx, store.Query{PartitionKey: keyID})
	if err != nil {
		return nil, unavailable(err, "list batches")
	}
	out := make([]*Batch, 0, len(es))
	for _, e := range es {
		out = append(out, batchFrom(e))
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// update applies change under the batch's ETag, re-reading on conflicts.
func (s *Service) update(ctx context.Context, keyID, id string, change func(b *Batch) bool) (*Batch, bool, error) {
	for try := 0; try < 20; try++ {
		e, err := s.batches.Get(ctx, keyID, id)
		if err != nil {
			return nil, false, err
		}
		b := batchFrom(e)
		if !change(b) {
			return b, false, nil
		}
		etag, err := s.batches.Update(ctx, batchEntity(b), b.etag)
		if errors.Is(err, store.ErrPrecondition) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		b.etag = etag
		return b, true, nil
	}
	return nil, false, fmt.Errorf("update batch %s: too many concurrent changes", id)
}

// Cancel asks a batch to stop: it is cancelling until its running lines
// end; lines not started are cancelled (Advance does the work).
func (s *Service) Cancel(ctx context.Context, keyID, id string) (*Batch, error) {
	if _, err := s.Get(ctx, keyID, id); err != nil {
		return nil, err
	}
	b, _, err := s.update(ctx, keyID, id, func(b *Batch) bool {
		if b.Status != StatusValidating && b.Status != StatusInProgress {
			return false
		}
		b.Status, b.End, b.CancellingAt = StatusCancelling, endCancel, s.now()
		return true
	})
	if err != nil {
		return nil, unavailable(err, "cancel the batch")
	}
	if b.Status != StatusCancelling {
		return nil, httperr.New(http.StatusConflict, "batch_not_cancellable", "The batch is "+string(b.Status)+"; only a validating or in-progress batch can be cancelled.")
	}
	return b, nil
}
