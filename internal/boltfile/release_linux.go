package boltfile

import "syscall"

// release is madvise(addr, n rounded up to the OS page, MADV_DONTNEED).
func release(addr, n uintptr) error {
	if n == 0 {
		return nil
	}
	ps := uintptr(syscall.Getpagesize())
	n = (n + ps - 1) &^ (ps - 1)
	if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, addr, n, syscall.MADV_DONTNEED); e != 0 {
		return e
	}
	return nil
}
