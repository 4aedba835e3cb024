package boltfile

import (
	"bytes"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// statm is /proc/self/statm, opened once and re-read with pread (no open
// and close per read).
var statm struct {
	once sync.Once
	f    *os.File
	mu   sync.Mutex
	buf  [128]byte
}

// fileRSS is the process's file-backed resident memory in bytes (RssFile
// plus RssShmem: the third field of /proc/self/statm), 0 when unknown.
func fileRSS() int64 {
	statm.once.Do(func() { statm.f, _ = os.Open("/proc/self/statm") })
	if statm.f == nil {
		return 0
	}
	statm.mu.Lock()
	defer statm.mu.Unlock()
	n, err := statm.f.ReadAt(statm.buf[:], 0)
	if n == 0 && err != nil {
		return 0
	}
	f := bytes.Fields(statm.buf[:n])
	if len(f) < 3 {
		return 0
	}
	pages, err := strconv.ParseInt(string(f[2]), 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(syscall.Getpagesize())
}
