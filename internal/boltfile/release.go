package boltfile

import (
	"sync/atomic"

	"go.etcd.io/bbolt"
)

// Resident memory.
//
// bbolt reads its file through a read-only shared memory map and writes it
// with pwrite, copy-on-write: every commit writes the touched leaf and
// branch pages to new page ids. A page becomes part of the process's RSS
// (RssFile) when it is first read through the map, and stays so until the
// kernel is short of memory. Reads of a B+tree path happen on every put
// (the descent to the leaf), every get and every scan, and the pages they
// land on keep moving (copy-on-write), so over time the resident part of
// the map grows to the whole file even when the workload only appends: the
// usage ledger's 1,000,000 events of one day (about 0.8 GiB of file) left
// ~800 MiB of RssFile against ~21 MiB of anonymous memory.
//
// Release drops the process's page-table entries of the map with
// madvise(MADV_DONTNEED): the pages stay in the page cache (the file is
// shared and clean, nothing is lost), and the next read of one of them is a
// minor fault. A Meter says when: after the process's file-backed RSS grew
// by its budget, which bounds the map's share of RSS to about that much.

// Release drops the resident pages of tx's database map from this
// process's RSS. It must run inside tx (read or write, before Commit):
// bbolt re-maps the file only under a lock that open transactions hold
// shared, so the map cannot move while Release runs. Byte slices into the
// map stay valid (they fault back in on use). It is a no-op where madvise
// is not available.
func Release(tx *bbolt.Tx) error {
	info := tx.DB().Info()
	return release(info.Data, uintptr(tx.Size()))
}

// Meter decides when to release a map: its owner counts the bytes it
// reads or writes through the map (Add), and every checkEvery counted bytes
// the Meter reads the process's file-backed RSS (/proc/self/statm); when
// that grew by the budget since the last release, Add says release.
//
// Counting alone is not enough: one read fault maps more than the page
// read (the kernel's fault-around, 64 KiB, and large page-cache folios on
// recent kernels), so the resident growth per read is measured rather than
// assumed. It is safe for concurrent use.
type Meter struct {
	budget, checkEvery int64
	touched            atomic.Int64
	base               atomic.Int64 // file-backed RSS after the last release
	rss                func() int64 // fileRSS; tests replace it
	// Releases counts the releases Add has asked for (tests, diagnostics).
	Releases atomic.Int64
}

// DefaultReleaseBytes is the release budget of the gateway's stores: the
// map adds about this much to RSS at most between two releases. It was 16
// MiB; with the ledger's rows appended (time-ordered ids) a release costs
// little, and 8 MiB lowered the peaks of TestGatewayLedgerRSS by 3-13 MiB
// (issue 17; docs/usage-and-finance.md).
const DefaultReleaseBytes = 8 << 20

// NewMeter returns a Meter with budget bytes (<= 0: DefaultReleaseBytes).
func NewMeter(budget int64) *Meter {
	if budget <= 0 {
		budget = DefaultReleaseBytes
	}
	m := &Meter{budget: budget, checkEvery: max(budget/64, 4096), rss: fileRSS}
	m.base.Store(m.rss())
	return m
}

// Add counts n bytes read or written and reports whether the caller should
// Release now; it then calls Released after the release.
func (m *Meter) Add(n int64) bool {
	if m.touched.Add(n) < m.checkEvery {
		return false
	}
	if m.touched.Swap(0) < m.checkEvery { // another caller checks
		return false
	}
	if m.rss()-m.base.Load() < m.budget {
		return false
	}
	m.Releases.Add(1)
	return true
}

// Released records the file-backed RSS after a release: the next one is due
// when it has grown by the budget again.
func (m *Meter) Released() { m.base.Store(m.rss()) }
