package sim_test

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/foundry-gateway/gateway/internal/sim"
)

// The simulator is a plain http.Handler; `handler sim` serves it like this.
func ExampleNew() {
	s, err := sim.New(sim.DefaultConfig(), slog.Default())
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Addr: "127.0.0.1:8081", Handler: s, ReadHeaderTimeout: 10 * time.Second}
	_ = srv // srv.ListenAndServe() in a real program
}
