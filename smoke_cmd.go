package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/foundry-gateway/gateway/internal/smoke"
)

// cmdSmoke is `handler smoke`: it calls a deployed gateway the way a client
// would (models, chat, stream, async job, usage report) and says plainly
// what works. It exits non-zero when a check fails.
func cmdSmoke(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("smoke", flag.ContinueOnError)
	url := fs.String("url", "", "gateway base URL, e.g. https://func-fgw-xyz.azurewebsites.net (the gatewayUrl output)")
	key := fs.String("key", "", "gateway API key (default $GATEWAY_KEY)")
	model := fs.String("model", "gpt-4o-mini", "model alias to call")
	jobTimeout := fs.Duration("job-timeout", 3*time.Minute, "how long to wait for the async job")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *key == "" {
		*key = getenv("GATEWAY_KEY")
	}
	if *url == "" || *key == "" {
		return usageError{"smoke: --url and --key (or $GATEWAY_KEY) are required"}
	}
	results := smoke.Run(ctx, smoke.Options{URL: *url, Key: *key, Model: *model, JobTimeout: *jobTimeout})
	if n := smoke.Write(stdout, *url, results); n > 0 {
		return fmt.Errorf("smoke: %d of %d checks failed", n, len(results))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}
