//go:build !linux

package boltfile

// release does nothing where madvise(MADV_DONTNEED) is not used: the
// gateway's production path is Linux (Azure Functions) and Azure Tables.
func release(addr, n uintptr) error { return nil }

// fileRSS is not measured here: Meter.Add then never asks for a release.
func fileRSS() int64 { return 0 }
