package config

import (
	"fmt"
	"time"
)

// BatchConfig tunes the OpenAI Batch API (/openai/v1/files and
// /openai/v1/batches, see docs/batch.md). Each line of a batch runs as a
// low-priority job.
type BatchConfig struct {
	// MaxFileBytes is the largest upload (OpenAI's limit: 200 MB). Default 209715200.
	MaxFileBytes int64 `yaml:"maxFileBytes" json:"maxFileBytes"`
	// MaxLines is the most requests one batch may hold (OpenAI: 50,000). Default 50000.
	MaxLines int `yaml:"maxLines" json:"maxLines"`
	// FileContainer is the blob container of uploaded, output and error
	// files. Default batch-files.
	FileContainer string `yaml:"fileContainer" json:"fileContainer"`
	// FileRetention is how long a file lives when the upload sets no
	// expires_after, and how long output and error files live. Default 720h (30 days).
	FileRetention Duration `yaml:"fileRetention" json:"fileRetention"`
	// AdvanceBudget bounds the batch work (queueing lines, counting,
	// writing output files) done before each drain round. Default 30s.
	AdvanceBudget Duration `yaml:"advanceBudget" json:"advanceBudget"`
	// AdvanceInterval: while a drain round runs, batches are advanced
	// (request_counts, cancels, output files) this often. Default 5s.
	AdvanceInterval Duration `yaml:"advanceInterval" json:"advanceInterval"`
}

func (b *BatchConfig) applyDefaults() {
	if b.MaxFileBytes == 0 {
		b.MaxFileBytes = 200 << 20
	}
	if b.MaxLines == 0 {
		b.MaxLines = 50000
	}
	if b.FileContainer == "" {
		b.FileContainer = "batch-files"
	}
	if b.FileRetention == 0 {
		b.FileRetention = Duration(30 * 24 * time.Hour)
	}
	if b.AdvanceInterval == 0 {
		b.AdvanceInterval = Duration(5 * time.Second)
	}
	if b.AdvanceBudget == 0 {
		b.AdvanceBudget = Duration(30 * time.Second)
	}
}

func (b *BatchConfig) validate() []error {
	var errs []error
	if b.MaxFileBytes < 0 {
		errs = append(errs, fmt.Errorf("batch.maxFileBytes %d: must be positive", b.MaxFileBytes))
	}
	if b.MaxLines < 0 || b.MaxLines > 1000000 {
		errs = append(errs, fmt.Errorf("batch.maxLines %d: want 1..1000000", b.MaxLines))
	}
	if b.FileRetention < 0 || b.AdvanceBudget < 0 || b.AdvanceInterval < 0 {
		errs = append(errs, fmt.Errorf("batch.fileRetention, batch.advanceBudget and batch.advanceInterval must be positive"))
	}
	return errs
}
