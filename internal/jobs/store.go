package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
)

// Table is the jobs table name (before the configured prefix).
const Table = "Jobs"

// Status of a job.
type Status string

// Job statuses. Terminal statuses never change again.
const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Terminal reports whether s is final.
func (s Status) Terminal() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCancelled
}

// Job is one low-priority request. Rows live in partition KeyID so a caller
// lists and reads only its own jobs with one partition query.
type Job struct {
	ID          string    `json:"id"`
	KeyID       string    `json:"-"`
	Team        string    `json:"team"`
	App         string    `json:"app"`
	Model       string    `json:"model"`
	Op          string    `json:"operation"`
	Status      Status    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	Attempts    int       `json:"attempts"`
	Error       string    `json:"error,omitempty"`
	CallbackURL string    `json:"callback_url,omitempty"`
	// Result is the backend's answer once the job is done.
	ResultStatus      int    `json:"result_status,omitempty"`
	ResultContentType string `json:"-"`
	ResultBody        []byte `json:"-"`
	// Callback delivery: "", "delivered", or "failed: …".
	CallbackState string `json:"callback_state,omitempty"`

	etag string
}

// Store keeps jobs in a table.
type Store struct {
	t   store.Table
	now func() time.Time
}

// NewStore wraps the Jobs table.
func NewStore(t store.Table, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{t: t, now: now}
}

// ErrNotFound: no such job for this caller.
var ErrNotFound = errors.New("jobs: not found")

// ErrConflict: the job is in a state that does not allow the change.
var ErrConflict = errors.New("jobs: conflict")

// newID returns "job_" and 24 hex characters.
func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "job_" + hex.EncodeToString(b[:])
}

// Create inserts a queued job.
func (s *Store) Create(ctx context.Context, j *Job) error {
	now := s.now().UTC().Truncate(time.Millisecond)
	j.Status, j.CreatedAt, j.UpdatedAt = StatusQueued, now, now
	etag, err := s.t.Insert(ctx, toEntity(j))
	if err != nil {
		return fmt.Errorf("create job: %w", err)
	}
	j.etag = etag
	return nil
}

// Get reads one of keyID's jobs.
func (s *Store) Get(ctx context.Context, keyID, id string) (*Job, error) {
	e, err := s.t.Get(ctx, keyID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get job: %w", err)
	}
	return fromEntity(e), nil
}

// List returns keyID's jobs, newest first, optionally only one status.
func (s *Store) List(ctx context.Context, keyID string, status Status, limit int) ([]*Job, error) {
	es, err := s.t.Query(ctx, store.Query{PartitionKey: keyID})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	var out []*Job
	for i := len(es) - 1; i >= 0; i-- {
		j := fromEntity(es[i])
		if status != "" && j.Status != status {
			continue
		}
		j.ResultBody = nil // listings stay small
		out = append(out, j)
	}
	// Ids are random: order by creation time.
	for i := 1; i < len(out); i++ {
		for k := i; k > 0 && out[k].CreatedAt.After(out[k-1].CreatedAt); k-- {
			out[k], out[k-1] = out[k-1], out[k]
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Range returns up to limit of keyID's jobs whose ids lie in [from, to),
// in id order, results included (the lines of a batch: ids share its
// prefix). limit 0 = all.
func (s *Store) Range(ctx context.Context, keyID, from, to string, limit int) ([]*Job, error) {
	es, err := s.t.Query(ctx, store.Query{PartitionKey: keyID, RowKeyFrom: from, RowKeyTo: to, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("range jobs: %w", err)
	}
	out := make([]*Job, len(es))
	for i, e := range es {
		out[i] = fromEntity(e)
	}
	return out, nil
}

// Update applies change to the stored job under its ETag, re-reading and
// retrying on conflicts. change returns false to leave the job as it is
// (for example because it is already terminal). It returns the job as
// stored and whether change was applied.
func (s *Store) Update(ctx context.Context, keyID, id string, change func(j *Job) bool) (*Job, bool, error) {
	for try := 0; try < 20; try++ {
		j, err := s.Get(ctx, keyID, id)
		if err != nil {
			return nil, false, err
		}
		if !change(j) {
			return j, false, nil
		}
		j.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
		etag, err := s.t.Update(ctx, toEntity(j), j.etag)
		if errors.Is(err, store.ErrPrecondition) {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("update job: %w", err)
		}
		j.etag = etag
		return j, true, nil
	}
	return nil, false, fmt.Errorf("update job %s: too many concurrent changes", id)
}

// Cancel cancels a queued job; a job already running or done is a conflict.
func (s *Store) Cancel(ctx context.Context, keyID, id string) (*Job, error) {
	j, applied, err := s.Update(ctx, keyID, id, func(j *Job) bool {
		if j.Status != StatusQueued {
			return false
		}
		j.Status = StatusCancelled
		j.FinishedAt = s.now().UTC().Truncate(time.Millisecond)
		return true
	})
	if err != nil {
		return nil, err
	}
	if !applied {
		return j, fmt.Errorf("%w: job is %s", ErrConflict, j.Status)
	}
	return j, nil
}

// resultChunk is the size of one binary property holding part of a result
// (Table Storage allows 64 KiB per binary property, 1 MiB per entity).
const resultChunk = 60 << 10

// maxResult is the largest result body kept in the row.
const maxResult = 14 * resultChunk

func toEntity(j *Job) store.Entity {
	p := map[string]any{
		"Team": j.Team, "App": j.App, "Model": j.Model, "Op": j.Op, "Status": string(j.Status),
		"CreatedAt": j.CreatedAt, "UpdatedAt": j.UpdatedAt, "Attempts": int64(j.Attempts),
	}
	if !j.StartedAt.IsZero() {
		p["StartedAt"] = j.StartedAt
	}
	if !j.FinishedAt.IsZero() {
		p["FinishedAt"] = j.FinishedAt
	}
	for k, v := range map[string]string{"Error": j.Error, "CallbackURL": j.CallbackURL,
		"ResultContentType": j.ResultContentType, "CallbackState": j.CallbackState} {
		if v != "" {
			p[k] = v
		}
	}
	if j.ResultStatus != 0 {
		p["ResultStatus"] = int64(j.ResultStatus)
	}
	body := j.ResultBody
	for i := 0; len(body) > 0; i++ {
		n := min(len(body), resultChunk)
		p["Result"+strconv.Itoa(i)] = body[:n]
		body = body[n:]
	}
	return store.Entity{PartitionKey: j.KeyID, RowKey: j.ID, Props: p}
}

func fromEntity(e store.Entity) *Job {
	s := func(n string) string { v, _ := e.Props[n].(string); return v }
	t := func(n string) time.Time { v, _ := e.Props[n].(time.Time); return v.UTC() }
	i := func(n string) int { v, _ := e.Props[n].(int64); return int(v) }
	j := &Job{ID: e.RowKey, KeyID: e.PartitionKey, Team: s("Team"), App: s("App"), Model: s("Model"), Op: s("Op"),
		Status: Status(s("Status")), CreatedAt: t("CreatedAt"), UpdatedAt: t("UpdatedAt"), StartedAt: t("StartedAt"),
		FinishedAt: t("FinishedAt"), Attempts: i("Attempts"), Error: s("Error"), CallbackURL: s("CallbackURL"),
		ResultStatus: i("ResultStatus"), ResultContentType: s("ResultContentType"), CallbackState: s("CallbackState"),
		etag: e.ETag}
	for k := 0; ; k++ {
		b, ok := e.Props["Result"+strconv.Itoa(k)].([]byte)
		if !ok {
			break
		}
		j.ResultBody = append(j.ResultBody, b...)
	}
	return j
}
