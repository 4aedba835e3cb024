package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/foundry-gateway/gateway/internal/audit"
	"github.com/foundry-gateway/gateway/internal/config"
)

// auditGroup is `handler audit …`: one request's audit record, read from
// the blob store the config names, or from a gateway's admin API.
func auditGroup() group {
	return group{name: "audit", subs: []subcommand{
		{name: "get", args: "REQUEST_ID [--team T] [--gateway URL]", about: "one request's audit record (JSON)",
			minArgs: 1, maxArgs: 1, flags: auditGet},
	}}
}

func auditGet(fs *flag.FlagSet) func(ctx context.Context, e env, pos []string) error {
	path := configFlag(fs)
	team := fs.String("team", "", "only search this team's blobs (faster)")
	gw := fs.String("gateway", "", "read through this gateway's admin API (GET /gateway/admin/audit/ID) with $GATEWAY_ADMIN_KEY (an admin or audit:read key) instead of the blob store")
	return func(ctx context.Context, e env, pos []string) error {
		id := pos[0]
		if _, ok := audit.IDTime(id); !ok {
			return usageError{"audit get: REQUEST_ID must be the 32 hex characters of a gateway X-Request-Id"}
		}
		if *gw != "" {
			key := strings.TrimSpace(e.getenv("GATEWAY_ADMIN_KEY"))
			if key == "" {
				return usageError{"audit get --gateway: set GATEWAY_ADMIN_KEY to an admin or audit:read key"}
			}
			ac := &adminClient{base: strings.TrimRight(*gw, "/"), key: key, hc: &http.Client{Timeout: 60 * time.Second}}
			p := adminPath + "/audit/" + url.PathEscape(id)
			if *team != "" {
				p += "?team=" + url.QueryEscape(*team)
			}
			return ac.do(ctx, http.MethodGet, p, nil, nil, e.stdout)
		}
		c, err := config.LoadFile(config.Path(*path, e.getenv), e.getenv)
		if err != nil {
			return err
		}
		b, err := openBlobs(ctx, c, c.Audit.Container, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		st, ok := b.(auditStore)
		if !ok {
			return fmt.Errorf("audit: blob store %T cannot be read", b)
		}
		r, err := audit.Lookup(ctx, st, id, *team)
		if errors.Is(err, audit.ErrNotFound) {
			return fmt.Errorf("no audit record for request %s in container %s (not audited, or not flushed yet)", id, c.Audit.Container)
		}
		if err != nil {
			return err
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
}
