package boltfile

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// fileRSS is the process's file-backed resident memory in bytes (RssFile
// plus RssShmem: the "shared" field of /proc/self/statm), 0 when unknown.
func fileRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0
	}
	pages, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(syscall.Getpagesize())
}
