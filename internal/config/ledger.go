package config

import "fmt"

// LedgerConfig tunes the usage ledger (UsageEvents, UsageDaily).
type LedgerConfig struct {
	// FlushInterval is how often buffered usage events are written to the
	// store, and so the most a hard kill (SIGKILL, power loss) can lose.
	// Default 1s.
	FlushInterval Duration `yaml:"flushInterval" json:"flushInterval"`
	// MaxBuffered is how many events may wait in memory for a store that is
	// failing before they are appended to the spool file. Default 10000.
	MaxBuffered int `yaml:"maxBuffered" json:"maxBuffered"`
	// SpoolAfter is how long events may wait in memory for a store that is
	// failing before they are appended to the spool file, whatever their
	// number. Default 5s.
	SpoolAfter Duration `yaml:"spoolAfter" json:"spoolAfter"`
	// SpoolPath is the local append-only file (JSON lines) that keeps events
	// while the store is down; it is replayed when the store is back.
	// Default ./data/usage-spool.jsonl.
	SpoolPath string `yaml:"spoolPath" json:"spoolPath"`
	// BatchDiscount is the fraction taken off the cost of class batch
	// requests (0.5 = half price). Default 0: no discount.
	BatchDiscount float64 `yaml:"batchDiscount" json:"batchDiscount"`
}

func (l *LedgerConfig) applyDefaults() {
	if l.FlushInterval == 0 {
		l.FlushInterval = Duration(1e9)
	}
	if l.MaxBuffered == 0 {
		l.MaxBuffered = 10000
	}
	if l.SpoolAfter == 0 {
		l.SpoolAfter = Duration(5e9)
	}
	if l.SpoolPath == "" {
		l.SpoolPath = "./data/usage-spool.jsonl"
	}
}

func (l *LedgerConfig) validate() []error {
	var errs []error
	if l.FlushInterval < 0 || l.SpoolAfter < 0 {
		errs = append(errs, fmt.Errorf("ledger: flushInterval and spoolAfter must not be negative"))
	}
	if l.MaxBuffered < 100 {
		errs = append(errs, fmt.Errorf("ledger.maxBuffered %d: must be at least 100", l.MaxBuffered))
	}
	if l.BatchDiscount < 0 || l.BatchDiscount > 1 {
		errs = append(errs, fmt.Errorf("ledger.batchDiscount %v: must be between 0 and 1", l.BatchDiscount))
	}
	return errs
}
