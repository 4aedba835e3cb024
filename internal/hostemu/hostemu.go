package hostemu

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/foundry-gateway/gateway/internal/deploy"
)

// DefaultHostVersion is the host version the emulator reports in
// X-Azure-Functions-HostVersion and the User-Agent.
const DefaultHostVersion = "4.1040.0"

// Options say what to run and how.
type Options struct {
	// Zip is the deployment package to run. Required.
	Zip string
	// Dir is the app root the package is unzipped into; it must be empty or
	// absent. Required.
	Dir string
	// AppSettings are the function app's settings. As on Azure they are the
	// environment of the host, which the handler inherits; PATH and HOME of
	// the test process are added when not set.
	AppSettings map[string]string
	// Output receives everything the handler prints. Default: discarded.
	Output io.Writer
	// HostVersion is reported to the handler. Default DefaultHostVersion.
	HostVersion string
	// ClockStart, when set, is what the emulator's clock reads when the
	// timers start; it then advances in real time. Timers fire when that
	// clock reaches a scheduled instant, so a test starts just before a rare
	// instant (every 5 minutes) instead of waiting for it. Zero: real time.
	ClockStart time.Time
	// StartTimeout bounds the readiness polling. Default 30 s, the host's
	// WorkerConstants.WorkerInitTimeoutSeconds.
	StartTimeout time.Duration
}

// Function is one indexed function.
type Function struct {
	Name     string
	Bindings []Binding
	// Trigger is the binding whose type ends in "Trigger".
	Trigger Binding
	// Schedule is the resolved NCRONTAB expression of a timer trigger.
	Schedule string
}

// Binding is one entry of a function.json "bindings" array.
type Binding struct {
	Type       string   `json:"type"`
	Direction  string   `json:"direction"`
	Name       string   `json:"name"`
	Route      string   `json:"route"`
	Methods    []string `json:"methods"`
	Schedule   string   `json:"schedule"`
	RunOnStart bool     `json:"runOnStartup"`
}

// Invocation is one payload-protocol invocation the host made.
type Invocation struct {
	Function string
	ID       string
	// Due is the scheduled instant (emulator clock); Start and End are real time.
	Due        time.Time
	Start, End time.Time
	Status     int
	// Logs are the invocation result's Logs.
	Logs []string
	// Err is set when the invocation failed: transport error, non-2xx
	// status or a body that is not an invocation result.
	Err error
}

// Host is a running emulated Functions host.
type Host struct {
	// URL is the public front end (http://127.0.0.1:port).
	URL string
	// HandlerURL is where the handler listens (http://127.0.0.1:port).
	HandlerURL string
	// Root is the app root (the unzipped package).
	Root string
	// Functions are the indexed functions, by name order.
	Functions []Function
	// FunctionErrors are the folders the host skipped, with the reason.
	FunctionErrors map[string]string

	opts    Options
	cfg     hostConfig
	cmd     *exec.Cmd
	exited  chan struct{}
	front   *http.Server
	proxy   *httputil.ReverseProxy
	client  *http.Client
	stop    context.CancelFunc
	offset  time.Duration // emulator clock minus real time
	timers  sync.WaitGroup
	mu      sync.Mutex
	invokes []Invocation
	proxied []string // invocation ids of proxied requests
}

// hostConfig is the part of host.json the emulator uses.
type hostConfig struct {
	Version       string `json:"version"`
	CustomHandler *struct {
		Description *struct {
			DefaultExecutablePath string   `json:"defaultExecutablePath"`
			WorkingDirectory      string   `json:"workingDirectory"`
			Arguments             []string `json:"arguments"`
		} `json:"description"`
		EnableProxyingHTTPRequest   bool `json:"enableProxyingHttpRequest"`
		EnableForwardingHTTPRequest bool `json:"enableForwardingHttpRequest"`
		Port                        *int `json:"port"`
	} `json:"customHandler"`
	Extensions struct {
		HTTP struct {
			RoutePrefix *string `json:"routePrefix"`
		} `json:"http"`
	} `json:"extensions"`
}

// Start unzips, indexes and starts the package and returns once the handler
// answers. The caller must Close the host.
func Start(ctx context.Context, opts Options) (*Host, error) {
	if opts.Zip == "" || opts.Dir == "" {
		return nil, errors.New("hostemu: Zip and Dir are required")
	}
	if opts.HostVersion == "" {
		opts.HostVersion = DefaultHostVersion
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.Output == nil {
		opts.Output = io.Discard
	}
	// The small files first: when the package indexes to zero functions
	// there is no need to unpack the binary (the outcome is the same).
	const small = 1 << 20
	if err := unzip(opts.Zip, opts.Dir, func(f *zip.File) bool { return f.UncompressedSize64 < small }); err != nil {
		return nil, err
	}
	h := &Host{Root: opts.Dir, opts: opts, exited: make(chan struct{}),
		// Timeout as the host's: functionTimeout + 1 min; the emulator
		// uses a fixed bound.
		client: &http.Client{Timeout: 5 * time.Minute}}
	b, err := os.ReadFile(filepath.Join(opts.Dir, "host.json"))
	if err != nil {
		return nil, fmt.Errorf("hostemu: %w", err)
	}
	if err := json.Unmarshal(b, &h.cfg); err != nil {
		return nil, fmt.Errorf("hostemu: host.json: %w", err)
	}
	if h.cfg.CustomHandler == nil || h.cfg.CustomHandler.Description == nil {
		return nil, errors.New("hostemu: host.json has no customHandler.description: the host would not start a custom handler")
	}
	h.Functions, h.FunctionErrors, err = Index(opts.Dir, opts.AppSettings)
	if err != nil {
		return nil, err
	}
	if len(h.Functions) == 0 {
		return nil, fmt.Errorf("hostemu: the host indexed zero functions in %s (errors: %v); a function is a folder directly under the app root holding function.json", opts.Dir, h.FunctionErrors)
	}
	if err := unzip(opts.Zip, opts.Dir, func(f *zip.File) bool { return f.UncompressedSize64 >= small }); err != nil {
		return nil, err
	}
	if err := h.startHandler(); err != nil {
		return nil, err
	}
	if err := h.waitReady(ctx); err != nil {
		h.kill()
		return nil, err
	}
	if err := h.startFront(); err != nil {
		h.kill()
		return nil, err
	}
	if !opts.ClockStart.IsZero() {
		h.offset = opts.ClockStart.Sub(time.Now())
	}
	tctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	for _, f := range h.Functions {
		if strings.EqualFold(f.Trigger.Type, "timerTrigger") {
			h.timers.Add(1)
			go h.runTimer(tctx, f)
		}
	}
	return h, nil
}

// Unzip extracts the package at zipPath into dir with the Unix mode bits
// it records (the execute bit of the handler in particular).
func Unzip(zipPath, dir string) error {
	return unzip(zipPath, dir, func(*zip.File) bool { return true })
}

func unzip(zipPath, dir string, want func(*zip.File) bool) error {
	r, err := zip.OpenReader(zipPath)
	if err != nil {
		return fmt.Errorf("hostemu: %w", err)
	}
	defer r.Close()
	for _, f := range r.File {
		if !want(f) {
			continue
		}
		name := filepath.FromSlash(f.Name)
		if !filepath.IsLocal(name) {
			return fmt.Errorf("hostemu: unsafe path %q in the package", f.Name)
		}
		dst := filepath.Join(dir, name)
		if strings.HasSuffix(f.Name, "/") {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if f.CreatorVersion>>8 == 3 { // Unix: the mode survives, as with unzip on Linux
			mode = f.Mode().Perm()
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			rc.Close()
			return fmt.Errorf("hostemu: %w", err)
		}
		_, err = io.Copy(out, rc)
		rc.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("hostemu: unzip %s: %w", f.Name, err)
		}
	}
	return nil
}

var settingRef = regexp.MustCompile(`^%([^%]+)%$`)

// Index reads the functions of the app root at root as the host does: each
// folder directly under root that holds a function.json is a function
// named after the folder; the name must be valid and the file must declare
// at least one binding. Folders that fail are skipped and reported in
// errs, as the host records function errors and goes on. A timer
// schedule written %Name% is resolved from settings, as the host's name
// resolver does for binding attributes.
func Index(root string, settings map[string]string) (fns []Function, errs map[string]string, err error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, nil, fmt.Errorf("hostemu: %w", err)
	}
	errs = map[string]string{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		b, rerr := os.ReadFile(filepath.Join(root, e.Name(), "function.json"))
		if rerr != nil {
			continue // not a function directory
		}
		name := e.Name()
		if !deploy.ValidFunctionName(name) {
			errs[name] = fmt.Sprintf("'%s' is not a valid function name.", name)
			continue
		}
		var fj struct {
			Bindings []Binding `json:"bindings"`
		}
		if jerr := json.Unmarshal(b, &fj); jerr != nil {
			errs[name] = jerr.Error()
			continue
		}
		if len(fj.Bindings) == 0 {
			errs[name] = "At least one binding must be declared."
			continue
		}
		f := Function{Name: name, Bindings: fj.Bindings}
		for _, bd := range fj.Bindings {
			if strings.HasSuffix(strings.ToLower(bd.Type), "trigger") {
				f.Trigger = bd
			}
		}
		if f.Trigger.Type == "" {
			errs[name] = "no trigger binding"
			continue
		}
		if strings.EqualFold(f.Trigger.Type, "timerTrigger") {
			f.Schedule = f.Trigger.Schedule
			if m := settingRef.FindStringSubmatch(f.Schedule); m != nil {
				v, ok := settings[m[1]]
				if !ok || v == "" {
					errs[name] = fmt.Sprintf("unable to resolve the value for property 'TimerTriggerAttribute.ScheduleExpression': app setting %s is not set", m[1])
					continue
				}
				f.Schedule = v
			}
			if _, perr := deploy.ParseNCRONTAB(f.Schedule); perr != nil {
				errs[name] = fmt.Sprintf("timer schedule %q: %v", f.Schedule, perr)
				continue
			}
		}
		fns = append(fns, f)
	}
	sort.Slice(fns, func(i, j int) bool { return fns[i].Name < fns[j].Name })
	return fns, errs, nil
}

// isHTTPInAndOut is the host's IsHttpInAndOutFunction: exactly one input
// binding, an httpTrigger, and exactly one output binding, an http.
func isHTTPInAndOut(f Function) bool {
	var in, out []Binding
	for _, b := range f.Bindings {
		switch strings.ToLower(b.Direction) {
		case "in":
			in = append(in, b)
		case "out":
			out = append(out, b)
		}
	}
	return len(in) == 1 && strings.EqualFold(in[0].Type, "httpTrigger") &&
		len(out) == 1 && strings.EqualFold(out[0].Type, "http")
}

// environ is the handler's environment: the app settings (with PATH and
// HOME of this process when unset) plus the variables the host adds.
func (h *Host) environ(port int, workerID string) []string {
	env := map[string]string{}
	for _, k := range []string{"PATH", "HOME"} {
		env[k] = os.Getenv(k)
	}
	for k, v := range h.opts.AppSettings {
		env[k] = v
	}
	p := fmt.Sprint(port)
	env["FUNCTIONS_HTTPWORKER_PORT"] = p
	env["FUNCTIONS_HTTPWORKER_ID"] = workerID
	env["FUNCTIONS_CUSTOMHANDLER_PORT"] = p
	env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"] = workerID
	env["FUNCTIONS_APP_ROOT_PATH"] = h.Root
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

var envRef = regexp.MustCompile(`%([^%]+?)%`)

// expandArgs builds the handler's command line as the host does: each
// argument expanded from the environment (Environment.ExpandEnvironmentVariables,
// %NAME% only), references to unset variables removed
// (SanitizeExpandedArgument), the arguments joined with spaces into one
// string that the process start then splits again on whitespace (double
// quotes group).
func expandArgs(args []string, getenv func(string) (string, bool)) []string {
	var line strings.Builder
	for _, a := range args {
		a = envRef.ReplaceAllStringFunc(a, func(m string) string {
			if v, ok := getenv(m[1 : len(m)-1]); ok {
				return v
			}
			return m
		})
		a = envRef.ReplaceAllString(a, "")
		line.WriteString(" " + a)
	}
	return splitCommandLine(line.String())
}

func splitCommandLine(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, have = !inQuote, true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

func (h *Host) startHandler() error {
	ch := h.cfg.CustomHandler
	desc := ch.Description
	port := 0
	if ch.Port != nil {
		port = *ch.Port
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	h.HandlerURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	workDir := h.Root
	if desc.WorkingDirectory != "" {
		workDir = desc.WorkingDirectory
		if !filepath.IsAbs(workDir) {
			workDir = filepath.Join(h.Root, workDir)
		}
	}
	exe := desc.DefaultExecutablePath
	if exe == "" {
		return errors.New("hostemu: WorkerDescription DefaultExecutablePath cannot be empty")
	}
	// HttpWorkerDescription.ApplyDefaultsAndValidate joins the executable to
	// the worker directory (the app root) when that file exists; otherwise
	// it is taken as a command on PATH.
	if !filepath.IsAbs(exe) {
		if _, err := os.Stat(filepath.Join(h.Root, exe)); err == nil {
			exe = filepath.Join(h.Root, exe)
		}
	}
	env := h.environ(port, newID())
	getenv := func(k string) (string, bool) {
		v, ok := h.opts.AppSettings[k]
		if !ok {
			v, ok = os.LookupEnv(k)
		}
		return v, ok
	}
	h.cmd = exec.Command(exe, expandArgs(desc.Arguments, getenv)...)
	h.cmd.Dir = workDir
	h.cmd.Env = env
	h.cmd.Stdout, h.cmd.Stderr = h.opts.Output, h.opts.Output
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		return fmt.Errorf("hostemu: start %s: %w", exe, err)
	}
	go func() { _ = h.cmd.Wait(); close(h.exited) }()
	return nil
}

// waitReady polls GET / until any HTTP response; only a connection error
// means "not ready" (DefaultHttpWorkerService.IsWorkerReady).
func (h *Host) waitReady(ctx context.Context) error {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(h.opts.StartTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-h.exited:
			return fmt.Errorf("hostemu: the handler exited before answering GET /: %v", h.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := c.Get(h.HandlerURL + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("hostemu: Initializing HttpWorker timed out: no answer on %s/ within %v", h.HandlerURL, h.opts.StartTimeout)
}

func (h *Host) startFront() error {
	target, _ := url.Parse(h.HandlerURL)
	h.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// YARP forwards the original path and query to the destination
			// prefix, with its default X-Forwarded-* transforms.
			pr.SetURL(target)
			pr.Out.URL.Path, pr.Out.URL.RawPath = pr.In.URL.Path, pr.In.URL.RawPath
			pr.SetXForwarded()
		},
		FlushInterval: -1, // stream: flush every write
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "hostemu: proxying to the handler failed: "+err.Error(), http.StatusInternalServerError)
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	h.URL = "http://" + l.Addr().String()
	h.front = &http.Server{Handler: http.HandlerFunc(h.serveFront), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = h.front.Serve(l) }()
	return nil
}

// serveFront is the host's HTTP front end.
func (h *Host) serveFront(w http.ResponseWriter, r *http.Request) {
	p := strings.ToLower(r.URL.Path)
	if p == "/admin" || strings.HasPrefix(p, "/admin/") || strings.HasPrefix(p, "/runtime/webhooks/") || p == "/runtime/webhooks" {
		// Host-owned routes: never an HTTP function's.
		http.Error(w, "hostemu: host-owned route, not forwarded to the handler", http.StatusNotFound)
		return
	}
	prefix := "api"
	if rp := h.cfg.Extensions.HTTP.RoutePrefix; rp != nil {
		prefix = *rp
	}
	for _, f := range h.Functions {
		if !strings.EqualFold(f.Trigger.Type, "httpTrigger") || !methodAllowed(f.Trigger.Methods, r.Method) {
			continue
		}
		route := f.Trigger.Route
		if route == "" {
			route = f.Name
		}
		if !MatchRoute(strings.Trim(prefix+"/"+route, "/"), r.URL.Path) {
			continue
		}
		if !isHTTPInAndOut(f) || !h.cfg.CustomHandler.EnableProxyingHTTPRequest {
			http.Error(w, "hostemu: only proxied HTTP functions (enableProxyingHttpRequest, one httpTrigger in, one http out) are emulated", http.StatusNotImplemented)
			return
		}
		id := newID()
		// DefaultHttpWorkerService.AddProxyingHeaders overwrites these two,
		// DefaultHttpProxyService.StartForwarding sets x-ms-invocation-id.
		r.Header.Set("X-Azure-Functions-HostVersion", h.opts.HostVersion)
		r.Header.Set("X-Azure-Functions-InvocationId", id)
		r.Header.Set("x-ms-invocation-id", id)
		h.mu.Lock()
		h.proxied = append(h.proxied, id)
		h.mu.Unlock()
		h.proxy.ServeHTTP(w, r)
		return
	}
	http.Error(w, "hostemu: no function matches "+r.Method+" "+r.URL.Path, http.StatusNotFound)
}

func methodAllowed(methods []string, m string) bool {
	if len(methods) == 0 {
		return true
	}
	for _, x := range methods {
		if strings.EqualFold(x, m) {
			return true
		}
	}
	return false
}

// MatchRoute reports whether path matches the ASP.NET-style route template
// (without leading slash): literal segments (case-insensitive), {name},
// {name?}, {name:constraint} (the constraint is not checked) and a final
// catch-all {*name}, which also matches nothing.
func MatchRoute(template, path string) bool {
	var tsegs, psegs []string
	if template != "" {
		tsegs = strings.Split(template, "/")
	}
	if p := strings.Trim(path, "/"); p != "" {
		psegs = strings.Split(p, "/")
	}
	for i, t := range tsegs {
		param := strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}")
		inner := strings.TrimSuffix(strings.TrimPrefix(t, "{"), "}")
		if param && strings.HasPrefix(inner, "*") {
			return i == len(tsegs)-1
		}
		if i >= len(psegs) {
			return param && strings.HasSuffix(strings.SplitN(inner, ":", 2)[0], "?") && i == len(tsegs)-1
		}
		if !param && !strings.EqualFold(t, psegs[i]) {
			return false
		}
	}
	return len(psegs) == len(tsegs)
}

// runTimer fires f on its schedule until ctx ends. As the timer listener,
// it computes the next occurrence after each invocation, so invocations
// of one function never overlap.
func (h *Host) runTimer(ctx context.Context, f Function) {
	defer h.timers.Done()
	sched, _ := deploy.ParseNCRONTAB(f.Schedule) // checked by Index
	var last time.Time
	if f.Trigger.RunOnStart {
		h.invoke(ctx, f, h.now(), last)
		last = h.now()
	}
	for {
		due := sched.Next(h.now())
		if due.IsZero() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(due.Sub(h.now())):
		}
		h.invoke(ctx, f, due, last)
		last = due
	}
}

func (h *Host) now() time.Time { return time.Now().UTC().Add(h.offset) }

// timerInfo is the TimerInfo object the host puts in Data.<binding>.
type timerInfo struct {
	Schedule       struct{ AdjustForDST bool } `json:"Schedule"`
	ScheduleStatus struct {
		Last, Next, LastUpdated string
	} `json:"ScheduleStatus"`
	IsPastDue bool `json:"IsPastDue"`
}

const dotnetTime = "2006-01-02T15:04:05.0000000Z07:00"

func (h *Host) invoke(ctx context.Context, f Function, due, last time.Time) {
	id := newID()
	var ti timerInfo
	ti.Schedule.AdjustForDST = true
	ti.ScheduleStatus.Last = "0001-01-01T00:00:00"
	if !last.IsZero() {
		ti.ScheduleStatus.Last = last.Format(dotnetTime)
	}
	ti.ScheduleStatus.Next = due.Format(dotnetTime)
	ti.ScheduleStatus.LastUpdated = ti.ScheduleStatus.Last
	body, _ := json.Marshal(map[string]any{
		"Data": map[string]any{f.Trigger.Name: ti},
		"Metadata": map[string]any{"sys": map[string]string{
			"MethodName": f.Name, "UtcNow": h.now().Format(dotnetTime), "RandGuid": newID(),
		}},
	})
	inv := Invocation{Function: f.Name, ID: id, Due: due, Start: time.Now()}
	defer func() {
		inv.End = time.Now()
		h.mu.Lock()
		h.invokes = append(h.invokes, inv)
		h.mu.Unlock()
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.HandlerURL+"/"+f.Name, bytes.NewReader(body))
	if err != nil {
		inv.Err = err
		return
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-Azure-Functions-HostVersion", h.opts.HostVersion)
	req.Header.Set("X-Azure-Functions-InvocationId", id)
	req.Header.Set("User-Agent", "Azure-Functions-Host/"+h.opts.HostVersion)
	resp, err := h.client.Do(req)
	if err != nil {
		inv.Err = err
		return
	}
	defer resp.Body.Close()
	inv.Status = resp.StatusCode
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		inv.Err = err
		return
	}
	// EnsureSuccessStatusCode, then ReadAsAsync<HttpScriptInvocationResult>.
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		inv.Err = fmt.Errorf("Response status code does not indicate success: %d: %s", resp.StatusCode, rb)
		return
	}
	var result struct {
		Outputs     map[string]json.RawMessage `json:"Outputs"`
		Logs        []string                   `json:"Logs"`
		ReturnValue json.RawMessage            `json:"ReturnValue"`
	}
	if err := json.Unmarshal(rb, &result); err != nil {
		inv.Err = fmt.Errorf("Invalid HttpResponseMessage: %w: %s", err, rb)
		return
	}
	inv.Logs = result.Logs
}

// Invocations returns the payload invocations made so far, in end order.
func (h *Host) Invocations() []Invocation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Invocation(nil), h.invokes...)
}

// ProxiedInvocationIDs returns the invocation ids given to proxied
// requests so far.
func (h *Host) ProxiedInvocationIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.proxied...)
}

// WaitInvocations waits until fn has had n invocations (failed ones
// included) or ctx ends, and returns fn's invocations.
func (h *Host) WaitInvocations(ctx context.Context, fn string, n int) ([]Invocation, error) {
	for {
		var got []Invocation
		for _, inv := range h.Invocations() {
			if inv.Function == fn {
				got = append(got, inv)
			}
		}
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("hostemu: %d invocations of %s, want %d: %w", len(got), fn, n, ctx.Err())
		case <-h.exited:
			return got, fmt.Errorf("hostemu: the handler exited: %v", h.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Exited is closed when the handler process has exited.
func (h *Host) Exited() <-chan struct{} { return h.exited }

// Close stops the timers and the front end, then the handler (SIGTERM,
// SIGKILL after 10 s).
func (h *Host) Close() error {
	if h.stop != nil {
		h.stop()
	}
	h.timers.Wait()
	if h.front != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = h.front.Shutdown(ctx)
		cancel()
	}
	h.kill()
	return nil
}

func (h *Host) kill() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
		<-h.exited
	}
}

// newID is a random GUID in the 8-4-4-4-12 form the host uses.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
