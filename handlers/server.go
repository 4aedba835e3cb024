package handlers

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/audit"
	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/cache"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/jobs"
	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/proxy"
	"github.com/foundry-gateway/gateway/internal/quota"
	"github.com/foundry-gateway/gateway/internal/route"
	"github.com/foundry-gateway/gateway/internal/telemetry"
	"github.com/foundry-gateway/gateway/internal/usage"
)

// authenticator checks a request's credential.
type authenticator interface {
	Authenticate(ctx context.Context, h http.Header) (auth.Principal, error)
}

// router resolves a model alias.
type router interface {
	Model(alias string) (*route.Model, error)
	Aliases() []string
}

// forwarder sends a call to a backend and writes the response.
type forwarder interface {
	Forward(w http.ResponseWriter, r *http.Request, m *route.Model, c proxy.Call) proxy.Result
}

// resourceForwarder sends a call to the one backend that holds a resource.
type resourceForwarder interface {
	ForwardResource(w http.ResponseWriter, r *http.Request, c proxy.Resource) int
}

// admitter enforces rate limits and token budgets.
type admitter interface {
	Admit(ctx context.Context, h http.Header, subjects []quota.Subject, req openai.Request, body []byte) (*quota.Ticket, error)
}

// promptCounter counts prompt tokens offline.
type promptCounter interface {
	Prompt(op openai.Op, model string, body []byte) int64
}

// UsageSink receives one event per completed inference call.
type UsageSink interface {
	Record(ctx context.Context, e Event)
}

// Event is what the gateway knows about a finished call.
type Event struct {
	Time       time.Time
	RequestID  string
	KeyID      string
	Team       string
	App        string
	Model      string
	Op         string
	Backend    string
	Deployment string
	Region     string
	Stream     bool
	Status     int
	Attempts   int
	Latency    time.Duration
	TTFB       time.Duration
	Complete   bool
	Usage      usage.Usage
	// Class is interactive (synchronous calls) or batch (jobs).
	Class string
	// TraceID is the W3C trace id (the Application Insights operation id).
	TraceID string
	// Text is the streamed completion text, kept for estimating the usage
	// of a stream cut before its usage chunk; never logged.
	Text string
	// PromptEstimate is the offline prompt token count when the usage was
	// not reported (0 otherwise).
	PromptEstimate int64
	// Cache is exact or semantic when the response cache answered; Saved
	// is the original call's usage, served by SavedBackend/SavedDeployment.
	Cache                         string
	Saved                         usage.Usage
	SavedBackend, SavedDeployment string
}

// Timer is the work of a timer function (drain, rollup). It returns lines
// for the Functions invocation log.
type Timer func(ctx context.Context) (logs []string, err error)

// Deps are what the HTTP surface needs; main builds them.
type Deps struct {
	Log          *slog.Logger
	Auth         authenticator
	Router       router
	Proxy        forwarder
	Usage        UsageSink
	MaxBodyBytes int64
	// BodyReadTimeout bounds reading a request body (408 after it); 0 = none.
	BodyReadTimeout time.Duration
	// Timers by function name: POST /{name} runs them (payload protocol)
	// for the Functions host (UnderFunctions) or admin callers (standalone).
	Timers map[string]Timer
	// UnderFunctions is true when the Functions host runs the gateway.
	UnderFunctions bool
	// Ready reports whether dependencies (the store) are reachable.
	Ready func(ctx context.Context) error
	// Backends, when set, serves GET /admin/backends to admins.
	Backends backendStatus
	// Keys, when set, serves the admin keys API (/admin/keys...).
	Keys keyAdmin
	// Jobs serves GET/DELETE /jobs/{id} and GET /jobs; nil disables them.
	Jobs jobStore
	// Submit queues a low-priority request (Prefer: respond-async); nil
	// refuses async requests.
	Submit func(ctx context.Context, s jobs.Submission) (*jobs.Job, error)
	// Batches serves the Batch API (/openai/v1/files, /openai/v1/batches
	// and the Azure paths); nil answers 404.
	Batches batchAPI
	// Quota admits requests against rate limits and budgets; nil = none.
	Quota admitter
	// Tokens counts prompt tokens offline (usage estimates); nil = bytes/4.
	Tokens promptCounter
	// Telemetry records requests (nil = off).
	Telemetry *telemetry.Client
	// Cost prices an interactive call's usage, exactly, with its currency:
	// for telemetry and the monthly cost budgets (nil = none).
	Cost func(model, backend, deployment string, u usage.Usage) (money.Nanos, string)
	// HitCost prices a response-cache hit of an answer that cost u (the
	// configured share of it; 0 when hits are free); nil: hits cost nothing.
	HitCost func(model, backend, deployment string, u usage.Usage) (money.Nanos, string)
	// UsageReports serves /admin/usage and its page: admins read every
	// team's usage, other callers their own team's.
	UsageReports usageReporter
	// Limits, when set, serves the admin limits API (/admin/limits).
	Limits limitsAdmin
	// ResponseBackend names the backend that created a stored Responses
	// API response (the affinity table); with Resources it serves GET and
	// DELETE /responses/{id}, POST …/cancel and GET …/input_items. nil
	// disables them.
	// owner is the caller id that created it ("" when unknown); only that
	// caller may use it.
	ResponseBackend func(ctx context.Context, id string) (b *route.Backend, owner string, ok bool)
	Resources       resourceForwarder
	// Cache is the response cache (nil: off).
	Cache *cache.Cache
	// Build is shown by GET /healthz.
	Build BuildInfo
	// Safety checks prompts with content safety before they are forwarded
	// (nil = off); SafetyTarget is its host, for telemetry.
	Safety       promptChecker
	SafetyTarget SafetyTarget
	// Audit records the calls Audits selects (team, model); nil = off.
	// AuditMaxResponse caps the response bytes a record keeps (default
	// 16 MiB). AuditRecord serves GET /admin/audit/{request_id}.
	Audit            auditSink
	Audits           func(team, model string) bool
	AuditMaxResponse int
	AuditRecord      func(ctx context.Context, id, team string) (audit.Record, error)
}

// BuildInfo names the running binary: GET /healthz shows it, and
// `handler version` prints it.
type BuildInfo struct {
	// Service is always "foundry-gateway": the CLI checks it before it
	// talks to a running gateway.
	Service   string `json:"service"`
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	GoVersion string `json:"go"`
}

// New returns the HTTP handler of `handler serve`.
func New(d Deps) http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(d.Log)
	e.Use(requestID, tracing(d.Telemetry), recoverer(d.Log), bodyDeadline(d.BodyReadTimeout))

	g := &gateway{Deps: d}
	// Readiness: the Functions host polls GET / until any response arrives.
	e.GET("/", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, struct {
			Status string `json:"status"`
			BuildInfo
		}{"ok", d.Build})
	})
	e.GET("/readyz", g.readyz)
	e.HEAD("/readyz", g.readyz)

	for _, prefix := range []string{"/openai/v1", "/v1"} {
		e.POST(prefix+"/chat/completions", g.inference("chat/completions", openai.StyleV1))
		e.POST(prefix+"/completions", g.inference("completions", openai.StyleV1))
		e.POST(prefix+"/embeddings", g.inference("embeddings", openai.StyleV1))
		e.POST(prefix+"/responses", g.inference("responses", openai.StyleV1))
		for _, op := range []string{"images/generations", "audio/speech", "audio/transcriptions"} {
			e.POST(prefix+"/"+op, g.inference(op, openai.StyleV1))
		}
		e.GET(prefix+"/models", g.models)
		e.GET(prefix+"/models/:id", g.model)
		g.registerResponses(e, prefix+"/responses", "/openai/v1/responses")
	}
	// The Azure SDKs' Responses path: /openai/responses?api-version=…
	e.POST("/openai/responses", g.inference("responses", openai.StyleAzure))
	// …and their paths for the model list and one model.
	e.GET("/openai/models", g.models)
	e.GET("/openai/models/:id", g.model)
	g.registerResponses(e, "/openai/responses", "/openai/responses")
	e.POST("/openai/deployments/:deployment/chat/completions", g.inference("chat/completions", openai.StyleDeployment))
	e.POST("/openai/deployments/:deployment/completions", g.inference("completions", openai.StyleDeployment))
	e.POST("/openai/deployments/:deployment/embeddings", g.inference("embeddings", openai.StyleDeployment))
	for _, op := range []string{"images/generations", "audio/speech", "audio/transcriptions"} {
		e.POST("/openai/deployments/:deployment/"+op, g.inference(op, openai.StyleDeployment))
	}

	g.registerAdmin(e)
	g.registerJobs(e)
	g.registerBatch(e)
	for name, fn := range d.Timers {
		e.POST("/"+name, g.timer(name, fn))
	}
	return e
}

type gateway struct{ Deps }

// readyz answers whether this gateway can serve calls: 200 when its store
// answers and at least one backend's circuit is not open (or is due its
// half-open probe), 503 otherwise.
// Azure Front Door probes it (infra/modules/frontdoor.bicep) and sends
// callers to another region while it says 503.
func (g *gateway) readyz(c echo.Context) error {
	if g.Ready != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
		defer cancel()
		if err := g.Ready(ctx); err != nil {
			return httperr.Wrap(err, http.StatusServiceUnavailable, "not_ready", "The gateway's store is not reachable.")
		}
	}
	type ready struct {
		Status       string `json:"status"`
		Backends     int    `json:"backends"`
		BackendsOpen int    `json:"backends_open"`
	}
	r := ready{Status: "ready"}
	if g.Backends != nil {
		now := time.Now()
		for _, b := range g.Backends.Status() {
			r.Backends++
			// An open circuit past its openFor lets the next call through
			// as its probe: the gateway is ready to make it. (Counting it
			// as open would keep a drained region out forever: no call
			// would come to close it.)
			if b.Circuit == "open" && b.CircuitUntil != nil && b.CircuitUntil.After(now) {
				r.BackendsOpen++
			}
		}
		if r.Backends > 0 && r.BackendsOpen == r.Backends {
			return &httperr.Error{Status: http.StatusServiceUnavailable, Code: "no_backend_available",
				Msg: fmt.Sprintf("Every backend of this gateway (%d) has an open circuit.", r.Backends)}
		}
	}
	return c.JSON(http.StatusOK, r)
}

func (g *gateway) models(c echo.Context) error {
	p, err := g.caller(c.Request().Context(), c.Request().Header)
	if err != nil {
		return err
	}
	list := struct {
		Object string      `json:"object"`
		Data   []modelView `json:"data"`
	}{Object: "list", Data: []modelView{}}
	for _, a := range g.Router.Aliases() {
		if !p.Scope.AllowsModel(a) {
			continue // list only what the caller may call
		}
		list.Data = append(list.Data, modelView{ID: a, Object: "model", OwnedBy: "foundry-gateway"})
	}
	return c.JSON(http.StatusOK, list)
}

// requestID gives every response an x-request-id: 32 hex characters, a
// 48-bit millisecond timestamp then 80 random bits (the UUIDv7 layout).
// Time-ordered ids keep the usage ledger's row keys (request ids) in
// order, so the embedded store appends instead of touching pages all over
// its file; they reveal only when the request arrived.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
		_, _ = rand.Read(b[6:])
		id := hex.EncodeToString(b[:])
		c.Set("request_id", id)
		c.Response().Header().Set("X-Request-Id", id)
		return next(c)
	}
}

func requestIDOf(c echo.Context) string {
	id, _ := c.Get("request_id").(string)
	return id
}

// recoverer turns panics into 500s, except http.ErrAbortHandler, which is
// how a half-sent response is aborted and must reach net/http.
func recoverer(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler { //nolint:errorlint // sentinel value, compared as net/http does
						panic(v)
					}
					log.Error("panic", "request_id", requestIDOf(c), "panic", v)
					err = httperr.New(http.StatusInternalServerError, "internal_error", "the gateway failed to handle the request")
				}
			}()
			return next(c)
		}
	}
}

// errorHandler writes every error in the OpenAI shape; client-safe text only.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			log.Warn("error after response started", "request_id", requestIDOf(c), "error", err)
			return
		}
		var he *echo.HTTPError
		if errors.As(err, &he) {
			switch he.Code {
			case http.StatusNotFound:
				err = httperr.NotFound("404", "Resource not found: "+c.Request().Method+" "+c.Request().URL.Path)
			case http.StatusMethodNotAllowed:
				err = httperr.New(http.StatusMethodNotAllowed, "method_not_allowed", "Method "+c.Request().Method+" is not allowed on "+c.Request().URL.Path)
			default:
				err = httperr.Wrap(err, he.Code, "error", http.StatusText(he.Code))
			}
		}
		e := httperr.From(err)
		if e.Status >= 500 {
			log.Error("request failed", "request_id", requestIDOf(c), "status", e.Status, "code", e.Code, "error", e.Error())
		} else if !quiet[c.Request().URL.Path] {
			// Refusals (401, 403, 404, 400, 429, ...) get a line too; the
			// route pattern, never the URL (a query may hold a key).
			caller, _ := c.Get(ctxCaller).(string)
			log.LogAttrs(c.Request().Context(), slog.LevelInfo, "refused", slog.String("request_id", requestIDOf(c)),
				slog.String("method", c.Request().Method), slog.String("route", c.Path()), slog.String("key_id", caller),
				slog.Int("status", e.Status), slog.String("code", e.Code))
		}
		httperr.Write(c.Response(), e)
	}
}
