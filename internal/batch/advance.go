package batch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/foundry-gateway/gateway/internal/jobs"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/store"
)

// jobID is the id of line i's job: derived from the batch id and the line,
// so queueing a line again after a crash finds the same job (and the same
// usage row, which is keyed by the job id). custom_id is unique within a
// batch, so (batch, line) names the same request as (batch, custom_id).
func jobID(batchID string, i int) string {
	return "job_" + strings.TrimPrefix(batchID, "batch_") + "_" + fmt.Sprintf("%07d", i)
}

// jobRange is [from, to) of a batch's job ids.
func jobRange(batchID string) (string, string) {
	p := "job_" + strings.TrimPrefix(batchID, "batch_") + "_"
	return p, p[:len(p)-1] + "`" // '`' follows '_'
}

// requestID is the id of line i in the output and error files.
func requestID(batchID string, i int) string {
	return "batch_req_" + strings.TrimPrefix(batchID, "batch_") + "_" + fmt.Sprintf("%07d", i)
}

// AdvanceStats says what an Advance did.
type AdvanceStats struct {
	Active, Queued, Finished int
}

func (a AdvanceStats) String() string {
	return fmt.Sprintf("batches: %d active, %d lines queued, %d finished", a.Active, a.Queued, a.Finished)
}

// Advance moves every unfinished batch along, within the advance budget:
// it queues the lines of validating batches (resuming where a crashed run
// stopped), cancels the queued lines of cancelled or expired batches,
// counts line states into request_counts, and once every line has ended
// writes the output and error files and the final status. Every step can
// run again after a crash without doing its work twice.
func (s *Service) Advance(ctx context.Context) (AdvanceStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st AdvanceStats
	ctx, cancel := context.WithTimeout(ctx, s.opt.AdvanceBudget)
	defer cancel()
	s.sweep(ctx)
	idx, err := s.batches.Query(ctx, store.Query{PartitionKey: activePartition})
	if err != nil {
		return st, fmt.Errorf("batches: list active: %w", err)
	}
	var errs []error
	for _, e := range idx {
		if ctx.Err() != nil {
			break
		}
		st.Active++
		keyID, _ := e.Props["KeyID"].(string)
		created, _ := e.Props["CreatedAt"].(time.Time)
		queued, finished, err := s.advanceOne(ctx, keyID, e.RowKey, created)
		st.Queued += queued
		if finished {
			st.Finished++
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("batch %s: %w", e.RowKey, err))
		}
	}
	return st, errors.Join(errs...)
}

// Every runs Advance at once and then every interval until the returned
// stop is called; stop lets a running Advance finish (it has its own
// budget) and waits for it. The drain timer runs it beside a drain round,
// which lasts until the queue is empty: lines are queued while earlier
// ones already run, and request counts, cancels and finished batches move
// while the round runs.
func (s *Service) Every(ctx context.Context, interval time.Duration) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if _, err := s.Advance(ctx); err != nil && ctx.Err() == nil {
				s.opt.Log.Warn("batches: advance", "error", err)
			}
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(quit); <-done }
}

func (s *Service) dropIndex(ctx context.Context, id string) {
	if err := s.batches.Delete(ctx, activePartition, id, "*"); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.opt.Log.Warn("batch: drop index row", "batch", id, "error", err)
	}
}

func (s *Service) advanceOne(ctx context.Context, keyID, id string, indexed time.Time) (queued int, finished bool, err error) {
	e, err := s.batches.Get(ctx, keyID, id)
	if errors.Is(err, store.ErrNotFound) {
		if s.now().Sub(indexed) > time.Minute { // Create crashed before the batch row
			s.dropIndex(ctx, id)
		}
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	b := batchFrom(e)
	if b.Status.Terminal() {
		s.dropIndex(ctx, id)
		return 0, true, nil
	}
	if b.End == "" && !s.now().Before(b.ExpiresAt) {
		if b, _, err = s.update(ctx, keyID, id, func(b *Batch) bool {
			if b.End != "" || b.Status.Terminal() {
				return false
			}
			b.End = endExpire
			return true
		}); err != nil {
			return 0, false, err
		}
	}
	if b.Status == StatusValidating && b.End == "" {
		var done bool
		if queued, done, err = s.submit(ctx, b); err != nil || !done {
			return queued, false, err
		}
		if b, _, err = s.update(ctx, keyID, id, func(b *Batch) bool {
			if b.Status != StatusValidating {
				return false
			}
			b.Status, b.InProgressAt = StatusInProgress, s.now()
			return true
		}); err != nil {
			return queued, false, err
		}
	}
	rows, err := s.rows(ctx, b)
	if err != nil {
		return queued, false, err
	}
	completed, failed, open := 0, b.Invalid, 0
	for _, j := range rows {
		switch {
		case j.Status == jobs.StatusSucceeded && j.ResultStatus/100 == 2:
			completed++
		case j.Status == jobs.StatusSucceeded || j.Status == jobs.StatusFailed:
			failed++
		case j.Status == jobs.StatusCancelled:
		case j.Status == jobs.StatusQueued && b.End != "":
			// The batch is ending: a line not started yet will not start.
			c, err := s.lines.Cancel(ctx, keyID, j.ID)
			if err == nil || (errors.Is(err, jobs.ErrConflict) && c != nil && c.Status.Terminal()) {
				*j = *c
				if c.Status == jobs.StatusSucceeded {
					completed++
				} else if c.Status == jobs.StatusFailed {
					failed++
				}
				continue
			}
			open++
		default:
			open++
		}
	}
	allQueued := b.Submitted >= b.Lines || b.End != ""
	if !allQueued || open > 0 {
		if completed != b.Completed || failed != b.Failed {
			_, _, err = s.update(ctx, keyID, id, func(b *Batch) bool {
				if b.Status.Terminal() {
					return false
				}
				b.Completed, b.Failed = completed, failed
				return true
			})
		}
		return queued, false, err
	}
	return queued, true, s.finalize(ctx, b, rows, completed, failed)
}

// readLines loads a batch's validated lines.
func (s *Service) readLines(ctx context.Context, b *Batch) ([]line, error) {
	data, err := s.blobs.Get(ctx, linesBlob(b.ID))
	if err != nil {
		return nil, err
	}
	out := make([]line, 0, b.Lines)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), len(data)+1)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("lines of %s: %w", b.ID, err)
		}
		out = append(out, l)
	}
	if len(out) != b.Lines {
		return nil, fmt.Errorf("lines of %s: %d stored, want %d", b.ID, len(out), b.Lines)
	}
	return out, sc.Err()
}

// submitStep is how many lines are queued between two saves of the
// batch's progress.
const submitStep = 100

// submit queues the valid lines from b.Submitted on, saving progress every
// submitStep lines; done once all are queued. A crash repeats at most one
// step, and a repeated line finds its job (same id) instead of a new one.
func (s *Service) submit(ctx context.Context, b *Batch) (queued int, done bool, err error) {
	lines, err := s.readLines(ctx, b)
	if err != nil {
		return 0, false, err
	}
	s.queueing.Store(true)
	defer s.queueing.Store(false)
	op, _ := opOf(b.Endpoint)
	for start := b.Submitted; start < len(lines); {
		if ctx.Err() != nil {
			return queued, false, nil // the next round goes on
		}
		end := min(start+submitStep, len(lines))
		// The lines of a step are independent: queue them side by side
		// (each is a row write and a message send, network round trips in
		// Azure); progress is saved once the whole step is in.
		var (
			mu    sync.Mutex
			first error
			wg    sync.WaitGroup
			next  = start
		)
		for range submitWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					mu.Lock()
					i := next
					next++
					stop := first != nil
					mu.Unlock()
					if i >= end || stop {
						return
					}
					l := lines[i]
					if l.Code != "" {
						continue
					}
					err := s.submitLine(ctx, b, op, i, l)
					mu.Lock()
					if err != nil && first == nil {
						first = err
					} else if err == nil {
						queued++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if first != nil {
			return queued, false, first
		}
		nb, _, err := s.update(ctx, b.KeyID, b.ID, func(nb *Batch) bool {
			if nb.Submitted >= end {
				return false
			}
			nb.Submitted = end
			return true
		})
		if err != nil {
			return queued, false, err
		}
		if nb.End != "" { // cancelled meanwhile: queue no more
			return queued, false, nil
		}
		start = end
	}
	return queued, true, nil
}

// submitWorkers is how many lines of a step are queued at once.
const submitWorkers = 8

// submitLine queues line i as its job.
func (s *Service) submitLine(ctx context.Context, b *Batch, op openai.Op, i int, l line) error {
	req, err := openai.Parse(op, openai.StyleV1, "", "", l.Body)
	if err != nil { // validated before; cannot happen unless the blob was damaged
		return fmt.Errorf("line %d: %w", i+1, err)
	}
	_, err = s.lines.Submit(ctx, jobs.Submission{ID: jobID(b.ID, i), KeyID: b.KeyID, Team: b.Team, App: b.App,
		Regions: b.Regions, Req: req, Body: l.Body})
	return err
}

// rows reads all of a batch's line jobs, results included, in line order.
func (s *Service) rows(ctx context.Context, b *Batch) ([]*jobs.Job, error) {
	from, to := jobRange(b.ID)
	var out []*jobs.Job
	for {
		page, err := s.lines.Range(ctx, b.KeyID, from, to, 500)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < 500 {
			return out, nil
		}
		from = page[len(page)-1].ID + "\x00"
	}
}

// outputLine is one line of an output or error file (OpenAI's format).
type outputLine struct {
	ID       string    `json:"id"`
	CustomID string    `json:"custom_id"`
	Response *response `json:"response"`
	Error    *lineErr  `json:"error"`
}

type response struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

type lineErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// finalize writes the output and error files (in input order) and the
// batch's final status. File ids derive from the batch id, so a finalize
// repeated after a crash rewrites the same files.
func (s *Service) finalize(ctx context.Context, b *Batch, rows []*jobs.Job, completed, failed int) error {
	lines, err := s.readLines(ctx, b)
	if err != nil {
		return err
	}
	byID := make(map[string]*jobs.Job, len(rows))
	for _, j := range rows {
		byID[j.ID] = j
	}
	end := map[string]lineErr{
		endCancel: {Code: "batch_cancelled", Message: "The batch was cancelled before this request ran."},
		endExpire: {Code: "batch_expired", Message: "This request could not be executed before the completion window expired."},
	}[b.End]
	var out, errs bytes.Buffer
	oe, ee := json.NewEncoder(&out), json.NewEncoder(&errs)
	oe.SetEscapeHTML(false)
	ee.SetEscapeHTML(false)
	for i, l := range lines {
		ol := outputLine{ID: requestID(b.ID, i), CustomID: l.CustomID}
		j := byID[jobID(b.ID, i)]
		switch {
		case l.Code != "":
			ol.Error = &lineErr{Code: l.Code, Message: l.Msg}
		case (j == nil || j.Status == jobs.StatusCancelled || !j.Status.Terminal()) && b.End != "":
			e := end
			ol.Error = &e
		case j == nil || !j.Status.Terminal():
			// Cannot happen: a batch that did not end early finalizes
			// only once every line was queued and has ended.
			ol.Error = &lineErr{Code: "request_failed", Message: "The request was not run."}
		case j.Status == jobs.StatusCancelled:
			ol.Error = &lineErr{Code: "request_cancelled", Message: "The line's job was cancelled (DELETE /jobs/" + j.ID + ")."}
		case j.ResultStatus > 0 && len(j.ResultBody) > 0:
			body := json.RawMessage(j.ResultBody)
			if !json.Valid(body) {
				body, _ = json.Marshal(string(j.ResultBody))
			}
			ol.Response = &response{StatusCode: j.ResultStatus, RequestID: j.ID, Body: body}
		default:
			ol.Error = &lineErr{Code: "request_failed", Message: j.Error}
		}
		if ol.Response != nil && ol.Response.StatusCode/100 == 2 {
			_ = oe.Encode(ol)
		} else {
			_ = ee.Encode(ol)
		}
	}
	now := s.now()
	retention := b.OutputExpiresAfter
	if retention == 0 {
		retention = s.opt.FileRetention
	}
	hexID := strings.TrimPrefix(b.ID, "batch_")
	write := func(kind string, data []byte) (string, error) {
		if len(data) == 0 {
			return "", nil
		}
		f := &File{ID: "file-" + hexID + "-" + kind, KeyID: b.KeyID, Filename: b.ID + "_" + kind + ".jsonl",
			Purpose: PurposeBatchOutput, Bytes: int64(len(data)), CreatedAt: now, ExpiresAt: now.Add(retention)}
		if err := s.blobs.Put(ctx, f.ID, data); err != nil {
			return "", err
		}
		if _, err := s.files.Upsert(ctx, fileEntity(f)); err != nil {
			return "", err
		}
		return f.ID, nil
	}
	outID, err := write("output", out.Bytes())
	if err != nil {
		return err
	}
	errID, err := write("error", errs.Bytes())
	if err != nil {
		return err
	}
	if _, _, err := s.update(ctx, b.KeyID, b.ID, func(b *Batch) bool {
		if b.Status.Terminal() {
			return false
		}
		b.Completed, b.Failed, b.OutputFileID, b.ErrorFileID = completed, failed, outID, errID
		if b.FinalizingAt.IsZero() {
			b.FinalizingAt = now
		}
		switch {
		case b.End == endCancel:
			b.Status, b.CancelledAt = StatusCancelled, now
		case b.End == endExpire:
			b.Status, b.ExpiredAt = StatusExpired, now
		case b.Invalid == b.Lines:
			b.Status, b.FailedAt = StatusFailed, now
		default:
			b.Status, b.CompletedAt = StatusCompleted, now
		}
		return true
	}); err != nil {
		return err
	}
	s.dropIndex(ctx, b.ID)
	if err := s.blobs.Delete(ctx, linesBlob(b.ID)); err != nil {
		s.opt.Log.Warn("batch: delete validated lines", "batch", b.ID, "error", err)
	}
	return nil
}

// sweepEvery is how often Advance deletes expired files.
const sweepEvery = time.Hour

// sweep deletes expired files (row, then content), at most every sweepEvery.
func (s *Service) sweep(ctx context.Context) {
	now := s.now()
	if now.Sub(s.lastSweep) < sweepEvery {
		return
	}
	s.lastSweep = now
	es, err := s.files.Query(ctx, store.Query{AllPartitions: true})
	if err != nil {
		s.opt.Log.Warn("batch: list files to expire", "error", err)
		return
	}
	for _, e := range es {
		f := fileFrom(e)
		if f.ExpiresAt.IsZero() || now.Before(f.ExpiresAt) {
			continue
		}
		if err := s.files.Delete(ctx, f.KeyID, f.ID, e.ETag); err != nil {
			continue
		}
		if err := s.blobs.Delete(ctx, f.ID); err != nil {
			s.opt.Log.Warn("batch: delete expired file", "file", f.ID, "error", err)
		}
	}
}
