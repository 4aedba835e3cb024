package sim

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
)

// maxBodyBytes bounds request bodies; larger ones get 413.
const maxBodyBytes = 16 << 20

// Clock tells the simulator the time. Rate-limit windows and `created`
// timestamps use it, so tests can move time without sleeping. Latency
// sleeps always use real timers.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Server is the simulated Azure OpenAI resource. It is an http.Handler and
// safe for concurrent use. It starts no goroutines of its own.
type Server struct {
	cfg         Config
	logger      *slog.Logger
	clock       Clock
	deployments map[string]*deployment
	usage       ledger
	responses   *responseStore
	instance    [8]byte       // random per Server: ids differ between simulator instances
	seq         atomic.Uint64 // request counter, the rest of every id
	// metricsFault steers the metrics API: "" answers, "down" is 503,
	// "slow" answers only after the client gave up (POST /sim/metrics-fault).
	metricsFault atomic.Pointer[string]
	// contentSafety is the emulated Content Safety API (contentsafety.go).
	contentSafety contentSafety
}

// deployment is a configured deployment plus its live state.
type deployment struct {
	Deployment
	reasoning   bool
	embeddings  bool
	fingerprint string
	limits      *limiter
	draws       atomic.Uint64 // requests seen, numbers the fault draws
}

// New validates cfg, applies its defaults and returns a Server that uses
// the system clock. A nil logger discards logs.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	return NewWithClock(cfg, logger, systemClock{})
}

// NewWithClock is [New] with an injected clock for rate-limit windows.
func NewWithClock(cfg Config, logger *slog.Logger, clock Clock) (*Server, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		return nil, errors.New("sim: nil clock")
	}
	s := &Server{
		cfg:         cfg,
		logger:      logger,
		clock:       clock,
		deployments: make(map[string]*deployment, len(cfg.Deployments)),
		responses:   newResponseStore(cfg.MaxStoredResponses),
	}
	if _, err := rand.Read(s.instance[:]); err != nil {
		return nil, fmt.Errorf("sim: instance id: %w", err)
	}
	for _, d := range cfg.Deployments {
		h := newHasher()
		h.add(d.Model)
		s.deployments[d.Name] = &deployment{
			Deployment:  d,
			reasoning:   isReasoningModel(d.Model),
			embeddings:  isEmbeddingModel(d.Model),
			fingerprint: fmt.Sprintf("fp_%010x", h.sum()&(1<<40-1)),
			limits:      newLimiter(d, cfg.Window.D(), cfg.Metrics.Retention.D()),
		}
	}
	return s, nil
}

// Usage returns the simulator's own record of the usage it served, per
// deployment name: every request answered 200 whose body or stream was
// written to the end (see the package documentation).
func (s *Server) Usage() map[string]Totals { return s.usage.snapshot() }

// Reset clears the usage record, the rate-limit windows and the fault draw
// counters (so seeded faults replay from the start). Stored responses are
// kept: a conversation may span a reset.
func (s *Server) Reset() {
	s.usage.reset()
	for _, d := range s.deployments {
		d.limits.reset()
		d.draws.Store(0)
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := s.newID()
	h := w.Header()
	rid := uuidString(id)
	h.Set("apim-request-id", rid)
	h.Set("x-request-id", rid)
	h.Set("x-ms-region", s.cfg.Region)

	path := r.URL.Path
	if s.contentSafety.serve(w, r, s.authorizedContentSafety(r)) {
		return
	}
	if rest, ok := strings.CutPrefix(path, "/sim/"); ok {
		s.serveControl(w, r, rest)
		return
	}
	if strings.HasPrefix(path, "/subscriptions/") && strings.HasSuffix(path, "/metrics:getBatch") {
		s.serveMetrics(w, r)
		return
	}
	rest, ok := strings.CutPrefix(path, "/openai/")
	if !ok {
		writeError(w, errNotFound())
		return
	}
	if !s.authorized(r) {
		writeError(w, &apiError{status: http.StatusUnauthorized, Code: "401",
			Message: "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."})
		return
	}
	s.serveOpenAI(w, r, id, rest)
}

// authorized checks api-key or Authorization: Bearer against Config.APIKey.
func (s *Server) authorized(r *http.Request) bool {
	want := string(s.cfg.APIKey)
	if want == "" {
		return true
	}
	if r.Header.Get("api-key") == want {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && tok == want
}

// serveControl answers the operator endpoints under /sim/.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request, rest string) {
	switch {
	case rest == "usage" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Usage())
	case rest == "reset" && r.Method == http.MethodPost:
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	case rest == "metrics-fault" && r.Method == http.MethodPost:
		switch f := r.URL.Query().Get("fault"); f {
		case "", "down", "slow":
			s.metricsFault.Store(&f)
			w.WriteHeader(http.StatusNoContent)
		default:
			writeError(w, &apiError{status: http.StatusBadRequest, Code: "BadRequest", Message: "fault must be down, slow or empty"})
		}
	case rest == "healthz" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	default:
		writeError(w, errNotFound())
	}
}

// operation is an inference API.
type operation int

const (
	opChat operation = iota
	opCompletions
	opEmbeddings
	opResponses
	opImages
	opSpeech
	opTranscriptions
)

// azureName is the operation id Azure uses in its messages.
func (o operation) azureName() string {
	return [...]string{"chatCompletion", "completion", "embeddings", "responses", "imageGeneration", "audioSpeech", "audioTranscription"}[o]
}

// parseOperation maps the path after the deployment or v1 prefix.
func parseOperation(path string) (operation, bool) {
	switch path {
	case "chat/completions":
		return opChat, true
	case "completions":
		return opCompletions, true
	case "embeddings":
		return opEmbeddings, true
	case "responses":
		return opResponses, true
	case "images/generations":
		return opImages, true
	case "audio/speech":
		return opSpeech, true
	case "audio/transcriptions":
		return opTranscriptions, true
	}
	return 0, false
}

// serveOpenAI routes /openai/... (rest is the path after that prefix).
//
//	deployments/{deployment}/{chat/completions|completions|embeddings}  api-version required
//	v1/{chat/completions|completions|embeddings|responses}            model in body, api-version optional
//	responses                                                          model in body, api-version required (azure package path)
//	[v1/]responses/{id}                                                GET or DELETE a stored response
//	[v1/]responses/{id}/cancel, [v1/]responses/{id}/input_items        POST cancel, GET its input items
func (s *Server) serveOpenAI(w http.ResponseWriter, r *http.Request, id [16]byte, rest string) {
	if after, ok := strings.CutPrefix(rest, "deployments/"); ok {
		name, opPath, _ := strings.Cut(after, "/")
		op, known := parseOperation(opPath)
		if !known || op == opResponses {
			writeError(w, errNotFound())
			return
		}
		s.serveInference(w, r, id, op, name, true)
		return
	}
	v1 := false
	if after, ok := strings.CutPrefix(rest, "v1/"); ok {
		rest, v1 = after, true
	}
	if respPath, ok := strings.CutPrefix(rest, "responses/"); ok && respPath != "" {
		respID, sub, _ := strings.Cut(respPath, "/")
		if !v1 && r.URL.Query().Get("api-version") == "" {
			writeError(w, errNoAPIVersion())
			return
		}
		switch {
		case sub == "" && r.Method == http.MethodGet:
			s.getResponse(w, respID)
		case sub == "" && r.Method == http.MethodDelete:
			s.deleteResponse(w, respID)
		case sub == "cancel" && r.Method == http.MethodPost:
			s.cancelResponse(w, respID)
		case sub == "input_items" && r.Method == http.MethodGet:
			s.listInputItems(w, r, respID)
		case sub == "" || sub == "cancel" || sub == "input_items":
			writeError(w, errMethod())
		default:
			writeError(w, errNotFound())
		}
		return
	}
	op, known := parseOperation(rest)
	if !known || (!v1 && op != opResponses) {
		writeError(w, errNotFound())
		return
	}
	s.serveInference(w, r, id, op, "", !v1)
}

// call is one inference request on its way through the simulator.
type call struct {
	s          *Server
	w          http.ResponseWriter
	r          *http.Request
	ctx        context.Context
	d          *deployment
	op         operation
	id         [16]byte
	now        time.Time
	apiVersion string
	body       []byte
	steer      steering
	fault      fault
	pace       pacing
	limitsSet  bool              // rate-limit headers already written
	input      json.RawMessage   // a Responses request's input, kept with the response
	form       map[string]string // a multipart request's fields (file: its size)
}

// serveInference runs the checks every inference call shares, in Azure's
// order (version, deployment, operation), then the faults, then the
// operation itself. deploymentName is empty when the body names it.
func (s *Server) serveInference(w http.ResponseWriter, r *http.Request, id [16]byte, op operation, deploymentName string, versionRequired bool) {
	c := &call{s: s, w: w, r: r, ctx: r.Context(), op: op, id: id, now: s.clock.Now(),
		apiVersion: r.URL.Query().Get("api-version")}
	if err := c.serve(deploymentName, versionRequired); err != nil {
		c.fail(err)
	}
}

func (c *call) serve(deploymentName string, versionRequired bool) error {
	if c.r.Method != http.MethodPost {
		return errMethod()
	}
	if versionRequired && c.apiVersion == "" {
		return errNoAPIVersion()
	}
	if deploymentName != "" {
		if err := c.lookup(deploymentName); err != nil {
			return err
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, maxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &apiError{status: http.StatusRequestEntityTooLarge, Code: "RequestTooLarge", Type: "invalid_request_error",
				Message: fmt.Sprintf("The request body exceeds the %d byte limit.", maxBodyBytes)}
		}
		return fmt.Errorf("reading body: %w", err)
	}
	c.body = body
	model := ""
	if c.op == opTranscriptions {
		if err := c.parseForm(); err != nil {
			return err
		}
		model = c.form["model"]
	} else {
		if !gjson.ValidBytes(body) {
			return errInvalidJSON()
		}
		model = gjson.GetBytes(body, "model").Str
	}
	if c.d == nil {
		if model == "" {
			return errMissing("model")
		}
		if err := c.lookup(model); err != nil {
			return err
		}
	}
	if (c.op == opEmbeddings) != c.d.embeddings || (c.op == opCompletions && c.d.reasoning) {
		return &apiError{status: http.StatusBadRequest, Code: "OperationNotSupported",
			Message: fmt.Sprintf("The %s operation does not work with the specified model, %s. Please choose different model and try again. You can learn more about which models can be used with each operation here: https://go.microsoft.com/fwlink/?linkid=2197993.", c.op.azureName(), c.d.Model)}
	}
	if c.steer, err = parseSteering(c.r.Header); err != nil {
		return errInvalid("", err.Error())
	}
	c.pace = pacing{ttft: c.d.Latency.TTFT.D(), tps: c.d.Latency.TokensPerSecond}
	if c.steer.ttft != nil {
		c.pace.ttft = *c.steer.ttft
	}
	if c.steer.tps != nil {
		c.pace.tps = *c.steer.tps
	}
	c.fault = c.steer.fault
	if c.fault == faultNone {
		c.fault = drawFault(c.d.Faults, c.d.draws.Add(1), gjson.GetBytes(body, "stream").Bool())
	}
	if c.fault != faultNone {
		c.s.logger.Debug("sim: injecting fault", "deployment", c.d.Name, "fault", string(c.fault), "steered", c.steer.fault != faultNone)
	}
	if err := c.injectEarlyFault(); err != nil {
		return err
	}
	switch c.op {
	case opChat:
		return c.chat()
	case opCompletions:
		return c.completions()
	case opEmbeddings:
		return c.embeddings()
	case opImages:
		return c.images()
	case opSpeech:
		return c.speech()
	case opTranscriptions:
		return c.transcription()
	default:
		return c.createResponse()
	}
}

func (c *call) lookup(name string) error {
	d, ok := c.s.deployments[name]
	if !ok {
		return &apiError{status: http.StatusNotFound, Code: "DeploymentNotFound",
			Message: "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}
	}
	c.d = d
	return nil
}

// errTimedOut marks a request the timeout fault held until the client left.
var errTimedOut = errors.New("timeout fault: held until the client went away")

// injectEarlyFault carries out the faults that strike before the body is
// even looked at. cut and cut-before-usage happen while writing.
func (c *call) injectEarlyFault() error {
	switch c.fault {
	case faultReset:
		resetConn(c.w)
		return errAborted
	case faultTimeout:
		<-c.ctx.Done()
		return errTimedOut
	case fault500:
		return &apiError{status: http.StatusInternalServerError, Code: "InternalServerError", Type: "server_error",
			Message: "The server had an error while processing your request. Sorry about that!"}
	case fault502:
		return &apiError{status: http.StatusBadGateway, Code: "BadGateway", Type: "server_error",
			Message: "Bad gateway: the upstream model server did not answer."}
	case fault503:
		return &apiError{status: http.StatusServiceUnavailable, Code: "ServiceUnavailable", Type: "server_error",
			Message: "The service is temporarily unable to process your request. Please try again later."}
	case fault429:
		setRetryAfter(c.w.Header(), c.steer.retryAfter)
		return errRateLimited(c.steer.retryAfter)
	}
	return nil
}

// errAborted means the connection was torn down on purpose; nothing more
// can be written.
var errAborted = errors.New("connection reset by fault")

// admit charges est tokens against the deployment's window and writes the
// rate-limit headers; a rejection is a 429 with retry-after.
func (c *call) admit(est int64) error {
	st, ok := c.d.limits.admit(c.now, est)
	c.d.limits.setHeaders(c.w.Header(), st)
	c.limitsSet = true
	if !ok {
		setRetryAfter(c.w.Header(), st.retryAfter)
		return errRateLimited(st.retryAfter)
	}
	return nil
}

// fail answers err if nothing has been written yet; otherwise it only logs
// (once headers are out, the status is fixed).
func (c *call) fail(err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		c.s.logger.Debug("sim: request ended early", "deployment", c.deploymentName(), "err", err)
		return
	}
	if c.d != nil && !c.limitsSet {
		c.d.limits.setHeaders(c.w.Header(), c.d.limits.peek(c.now))
	}
	writeError(c.w, ae)
}

func (c *call) deploymentName() string {
	if c.d == nil {
		return ""
	}
	return c.d.Name
}

// record adds an answer to the usage ledger. Callers record just before
// they send the part that completes the answer (the body, the usage chunk
// or [DONE], response.completed) and after every fault that could stop it,
// so a client that has read a whole answer always finds it in Usage().
func (c *call) record(t Totals) { c.s.usage.add(c.d.Name, t) }

// writeBody sends a whole JSON answer and records its usage. With the cut
// fault it sends the headers and half the body, then aborts, like a
// connection lost mid-body, and records nothing.
func (c *call) writeBody(v any, usage Totals) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	c.w.WriteHeader(http.StatusOK)
	if c.fault == faultCut {
		_, _ = c.w.Write(b[:len(b)/2])
		_ = http.NewResponseController(c.w).Flush()
		abort()
	}
	c.record(usage)
	_, err = c.w.Write(b)
	return err
}

// decode unmarshals the body into v, turning type errors into 400s.
func (c *call) decode(v any) error {
	if err := json.Unmarshal(c.body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errInvalid(te.Field, fmt.Sprintf("Invalid type for '%s': expected %s.", te.Field, te.Type))
		}
		return errInvalidJSON()
	}
	return nil
}

// ids derived from the request id: unique across calls and instances.
func (c *call) idWith(prefix string) string { return prefix + hex.EncodeToString(c.id[:]) }

func (s *Server) newID() [16]byte {
	var b [16]byte
	copy(b[:8], s.instance[:])
	binary.BigEndian.PutUint64(b[8:], s.seq.Add(1))
	b[6] = b[6]&0x0f | 0x40 // version 4 layout, so it looks like the uuid Azure sends
	b[8] = b[8]&0x3f | 0x80
	return b
}

func uuidString(b [16]byte) string {
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}
