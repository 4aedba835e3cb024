package batch

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/foundry-gateway/gateway/internal/openai"
)

// Table names (before the configured prefix).
const (
	FilesTable   = "BatchFiles"
	BatchesTable = "Batches"
)

// Purposes of files.
const (
	PurposeBatch       = "batch"
	PurposeBatchOutput = "batch_output"
)

// File is an uploaded (or produced) file. Rows live in partition KeyID, so
// a caller sees only its own files.
type File struct {
	ID        string
	KeyID     string
	Filename  string
	Purpose   string
	Bytes     int64
	CreatedAt time.Time
	// ExpiresAt: the file is gone after it (zero: never).
	ExpiresAt time.Time
}

// FileView is a file in the OpenAI shape.
type FileView struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	Bytes     int64  `json:"bytes"`
	CreatedAt int64  `json:"created_at"`
	ExpiresAt *int64 `json:"expires_at"`
	Filename  string `json:"filename"`
	Purpose   string `json:"purpose"`
	Status    string `json:"status"`
}

// View is f as the API shows it.
func (f *File) View() FileView {
	return FileView{ID: f.ID, Object: "file", Bytes: f.Bytes, CreatedAt: f.CreatedAt.Unix(), ExpiresAt: unix(f.ExpiresAt),
		Filename: f.Filename, Purpose: f.Purpose, Status: "processed"}
}

// Status of a batch (OpenAI's values).
type Status string

// Batch statuses.
const (
	StatusValidating Status = "validating"
	StatusFailed     Status = "failed"
	StatusInProgress Status = "in_progress"
	StatusFinalizing Status = "finalizing"
	StatusCompleted  Status = "completed"
	StatusExpired    Status = "expired"
	StatusCancelling Status = "cancelling"
	StatusCancelled  Status = "cancelled"
)

// Terminal reports whether s never changes again.
func (s Status) Terminal() bool {
	return s == StatusFailed || s == StatusCompleted || s == StatusExpired || s == StatusCancelled
}

// Why a batch ends before all its lines ran.
const (
	endCancel = "cancel"
	endExpire = "expire"
)

// LineError is one entry of a batch's errors list.
type LineError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
	Line    *int64  `json:"line"`
}

// Batch is one batch. Rows live in partition KeyID.
type Batch struct {
	ID               string
	KeyID, Team, App string
	Regions          []string
	Endpoint         string
	InputFileID      string
	CompletionWindow string
	Model            string
	Status           Status
	// End is why the batch stops early: "cancel", "expire" or "".
	End string
	CreatedAt, InProgressAt, FinalizingAt, CompletedAt, FailedAt,
	ExpiredAt, CancellingAt, CancelledAt, ExpiresAt time.Time
	OutputFileID, ErrorFileID string
	// Lines is the number of input lines (request_counts.total); Invalid
	// of them failed validation and never ran.
	Lines, Invalid int
	// Submitted: lines [0, Submitted) have been queued (or were invalid).
	Submitted          int
	Completed, Failed  int
	Errors             []LineError
	Metadata           map[string]string
	OutputExpiresAfter time.Duration

	etag string
}

// Counts is request_counts.
type Counts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

// BatchView is a batch in the OpenAI shape.
type BatchView struct {
	ID               string            `json:"id"`
	Object           string            `json:"object"`
	Endpoint         string            `json:"endpoint"`
	Model            string            `json:"model,omitempty"`
	Errors           *ErrorList        `json:"errors"`
	InputFileID      string            `json:"input_file_id"`
	CompletionWindow string            `json:"completion_window"`
	Status           Status            `json:"status"`
	OutputFileID     *string           `json:"output_file_id"`
	ErrorFileID      *string           `json:"error_file_id"`
	CreatedAt        int64             `json:"created_at"`
	InProgressAt     *int64            `json:"in_progress_at"`
	ExpiresAt        *int64            `json:"expires_at"`
	FinalizingAt     *int64            `json:"finalizing_at"`
	CompletedAt      *int64            `json:"completed_at"`
	FailedAt         *int64            `json:"failed_at"`
	ExpiredAt        *int64            `json:"expired_at"`
	CancellingAt     *int64            `json:"cancelling_at"`
	CancelledAt      *int64            `json:"cancelled_at"`
	RequestCounts    Counts            `json:"request_counts"`
	Metadata         map[string]string `json:"metadata"`
}

// ErrorList is a batch's errors.
type ErrorList struct {
	Object string      `json:"object"`
	Data   []LineError `json:"data"`
}

// View is b as the API shows it.
func (b *Batch) View() BatchView {
	v := BatchView{ID: b.ID, Object: "batch", Endpoint: b.Endpoint, Model: b.Model, InputFileID: b.InputFileID,
		CompletionWindow: b.CompletionWindow, Status: b.Status, OutputFileID: str(b.OutputFileID), ErrorFileID: str(b.ErrorFileID),
		CreatedAt: b.CreatedAt.Unix(), InProgressAt: unix(b.InProgressAt), ExpiresAt: unix(b.ExpiresAt),
		FinalizingAt: unix(b.FinalizingAt), CompletedAt: unix(b.CompletedAt), FailedAt: unix(b.FailedAt),
		ExpiredAt: unix(b.ExpiredAt), CancellingAt: unix(b.CancellingAt), CancelledAt: unix(b.CancelledAt),
		RequestCounts: Counts{Total: b.Lines, Completed: b.Completed, Failed: b.Failed}, Metadata: b.Metadata}
	if len(b.Errors) > 0 {
		v.Errors = &ErrorList{Object: "list", Data: b.Errors}
	}
	return v
}

func unix(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	u := t.Unix()
	return &u
}

func str(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// opOf maps a batch endpoint or a line's url to its operation: OpenAI's
// "/v1/chat/completions" and Azure's "/chat/completions" (Azure's batch
// examples use the path without /v1) name the same one.
func opOf(path string) (openai.Op, bool) {
	p := strings.TrimPrefix(path, "/openai")
	p = strings.TrimPrefix(p, "/v1")
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	op, ok := openai.ParseOp(strings.TrimPrefix(p, "/"))
	if !ok {
		return "", false
	}
	switch op {
	case openai.OpChat, openai.OpCompletions, openai.OpEmbeddings, openai.OpResponses:
		return op, true
	}
	return "", false
}

// line is one input line as validation left it (the lines blob of a batch).
type line struct {
	CustomID string          `json:"c"`
	Model    string          `json:"m,omitempty"`
	Body     json.RawMessage `json:"b,omitempty"`
	// Code and Msg: the line is invalid and never runs.
	Code string `json:"e,omitempty"`
	Msg  string `json:"x,omitempty"`
}
