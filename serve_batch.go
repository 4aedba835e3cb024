package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/foundry-gateway/gateway/internal/batch"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/jobs"
	"github.com/foundry-gateway/gateway/internal/queue"
	"github.com/foundry-gateway/gateway/internal/queue/claim"
	"github.com/foundry-gateway/gateway/internal/store"
)

// batchLines runs batch lines as jobs of the low-priority queue.
type batchLines struct {
	st   *jobs.Store
	send claim.Sender
}

func (l batchLines) Submit(ctx context.Context, s jobs.Submission) (*jobs.Job, error) {
	return jobs.Submit(ctx, l.st, l.send, s)
}

func (l batchLines) Range(ctx context.Context, keyID, from, to string, limit int) ([]*jobs.Job, error) {
	return l.st.Range(ctx, keyID, from, to, limit)
}

func (l batchLines) Cancel(ctx context.Context, keyID, id string) (*jobs.Job, error) {
	return l.st.Cancel(ctx, keyID, id)
}

// newBatches builds the Batch API service: its tables, its blob container
// (batch.fileContainer) and the jobs its lines become.
func newBatches(ctx context.Context, c config.Config, st store.Store, q queue.Queue, claims *claim.Check, js *jobs.Store,
	policies map[string]jobs.Policy, log *slog.Logger) (*batch.Service, error) {
	files, err := table(ctx, st, c, batch.FilesTable)
	if err != nil {
		return nil, err
	}
	batches, err := table(ctx, st, c, batch.BatchesTable)
	if err != nil {
		return nil, err
	}
	blobs, err := openBlobs(ctx, c, c.Batch.FileContainer, log)
	if err != nil {
		return nil, fmt.Errorf("open blob container %s: %w", c.Batch.FileContainer, err)
	}
	return batch.New(files, batches, blobs, batchLines{st: js, send: claim.Sender{Queue: q, Check: claims}}, batch.Options{
		MaxFileBytes: c.Batch.MaxFileBytes, MaxLines: c.Batch.MaxLines, FileRetention: c.Batch.FileRetention.D(),
		AdvanceBudget: c.Batch.AdvanceBudget.D(), Log: log,
		Runnable: func(model string) error {
			if len(policies[model].Targets) == 0 {
				return httperr.BadRequest("jobs_not_allowed", "Model "+model+" has no deployment that may run low-priority jobs (models."+model+".jobs).")
			}
			return nil
		},
	}), nil
}
