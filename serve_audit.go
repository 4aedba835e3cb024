package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/foundry-gateway/gateway/handlers"
	"github.com/foundry-gateway/gateway/internal/audit"
	"github.com/foundry-gateway/gateway/internal/backendauth"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/safety"
)

// auditStore is what the audit trail needs of the blob store (internal/blob's
// Azure and Dir have it).
type auditStore interface {
	AppendAt(ctx context.Context, name string, data []byte, at int64) (int, error)
	List(ctx context.Context, prefix string) ([]string, error)
	Get(ctx context.Context, name string) ([]byte, error)
}

// wireSafetyAudit adds content safety and the audit trail (issue #19) to
// the handlers' dependencies. It returns the audit writer's worker and
// closer (nil when nothing is audited) for the app: the closer flushes on
// SIGTERM after the server has shut down.
func wireSafetyAudit(ctx context.Context, c config.Config, log *slog.Logger, deps *handlers.Deps) (worker, closer func(context.Context) error, err error) {
	if cs := c.ContentSafety; len(cs.Rules) > 0 {
		var authz interface {
			Authorize(ctx context.Context, h http.Header) error
		}
		if cs.Key != "" {
			authz = safety.KeyAuth(cs.Key.Reveal())
		} else {
			cred, err := backendauth.Credential(cs.ClientID)
			if err != nil {
				return nil, nil, fmt.Errorf("content safety credential: %w", err)
			}
			authz = backendauth.NewToken(cred, safety.Scope, nil)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		client := safety.NewClient(cs.Endpoint, authz, &http.Client{Transport: tr})
		deps.Safety = safety.NewGuard(client, cs)
		if u, err := url.Parse(cs.Endpoint); err == nil {
			deps.SafetyTarget = handlers.SafetyTarget(u.Host)
		}
	}
	if !c.Audit.Enabled() {
		return nil, nil, nil
	}
	b, err := openBlobs(ctx, c, c.Audit.Container, log)
	if err != nil {
		return nil, nil, fmt.Errorf("open audit container %s: %w", c.Audit.Container, err)
	}
	st, ok := b.(auditStore)
	if !ok {
		return nil, nil, fmt.Errorf("audit: blob store %T cannot append", b)
	}
	red, err := audit.NewRedactor(c.Audit.RedactPII, c.Audit.Redact)
	if err != nil {
		return nil, nil, err
	}
	w := audit.NewWriter(st, audit.Options{FlushInterval: c.Audit.FlushInterval.D(), MaxBuffered: c.Audit.MaxBuffered,
		SpoolAfter: c.Audit.SpoolAfter.D(), SpoolPath: c.Audit.SpoolPath, Redact: red, Log: log})
	// Replay what a previous run spooled before serving.
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.Flush(rctx); err != nil {
		log.Warn("audit spool not replayed yet; will retry", "error", err)
	}
	deps.Audit = w
	deps.Audits = c.Audit.Audits
	deps.AuditMaxResponse = int(c.MaxBodyBytes)
	deps.AuditRecord = func(ctx context.Context, id, team string) (audit.Record, error) {
		return audit.Lookup(ctx, st, id, team)
	}
	return w.Run, func(ctx context.Context) error {
		err := w.Close(ctx)
		s := w.Stats()
		log.Info("audit writer closed", "written", s.Written, "spooled", s.Spooled, "replayed", s.Replayed, "landed", s.Landed)
		return err
	}, nil
}
