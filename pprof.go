//go:build pprof

package main

// A profiling build (go build -tags pprof): GATEWAY_PPROF=127.0.0.1:6060
// serves net/http/pprof there, for profiling the request path under load
// (docs/performance.md). Release builds carry none of it.

import (
	"log"
	"net/http"
	_ "net/http/pprof" //nolint:gosec // profiling build only, bound to the address given
	"os"
	"runtime"
)

func init() {
	addr := os.Getenv("GATEWAY_PPROF")
	if addr == "" {
		return
	}
	if os.Getenv("GATEWAY_PPROF_CONTENTION") != "" {
		runtime.SetMutexProfileFraction(100)
		runtime.SetBlockProfileRate(100_000) // one sample per 100 µs blocked
	}
	go func() { log.Println(http.ListenAndServe(addr, nil)) }()
}
