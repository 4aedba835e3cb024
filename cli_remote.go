package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/quota"
	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/embedded"
)

// target is what an operator command works on: the store itself, or,
// when a running gateway holds the embedded store's file lock (`make run`
// is up), that gateway's admin API with a local admin key. Both run the
// same admin code (auth.Admin, quota.Admin, ledger reports).
type target struct {
	c      config.Config
	st     store.Store  // nil when remote
	remote *adminClient // nil when local
}

// Close releases the store.
func (t *target) Close() {
	if t.st != nil {
		t.st.Close()
	}
}

// cliLockWait is how long the CLI waits for the embedded store's file
// lock: a gateway holds it for as long as it runs, so waiting longer
// gains nothing.
const cliLockWait = 300 * time.Millisecond

// openTarget loads the config and opens the store, falling back to the
// running gateway's admin API when the embedded store is locked by it.
func openTarget(ctx context.Context, e env, path string) (*target, error) {
	// The whole config gives the listen address and the known teams; in
	// Azure, where its secrets are not at hand, the store and models
	// sections are enough (loadStoreConfig).
	c, err := config.LoadFile(config.Path(path, e.getenv), e.getenv)
	if err != nil {
		var serr error
		if c, serr = loadStoreConfig(path, e.getenv); serr != nil {
			return nil, err
		}
	}
	st, err := openStore(c, cliLockWait)
	if err == nil {
		return &target{c: c, st: st}, nil
	}
	if !errors.Is(err, embedded.ErrLocked) {
		return nil, err
	}
	rc, rerr := runningGateway(ctx, c, e.getenv)
	if rerr != nil {
		return nil, fmt.Errorf("the embedded store %s is held by another process and the CLI cannot use a running gateway's admin API instead: %w", c.Store.Path, rerr)
	}
	return &target{c: c, remote: rc}, nil
}

// devKeyFile is where `make run` keeps its admin dev key: beside the
// embedded store (data/dev-key for data/gateway.db).
func devKeyFile(c config.Config) string { return filepath.Join(filepath.Dir(c.Store.Path), "dev-key") }

// runningGateway finds the gateway serving c.Listen and an admin key for
// it: $GATEWAY_ADMIN_KEY, else the dev key file of `make run`.
func runningGateway(ctx context.Context, c config.Config, getenv func(string) string) (*adminClient, error) {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", c.Listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	base := "http://" + net.JoinHostPort(host, port)
	if !gatewayUp(ctx, base) {
		return nil, fmt.Errorf("no gateway answers on %s", base)
	}
	key := strings.TrimSpace(getenv("GATEWAY_ADMIN_KEY"))
	if key == "" {
		b, err := os.ReadFile(devKeyFile(c))
		if err != nil {
			return nil, fmt.Errorf("a gateway runs on %s, but there is no admin key: set GATEWAY_ADMIN_KEY (or keep make run's %s)", base, devKeyFile(c))
		}
		key = strings.TrimSpace(string(b))
	}
	return &adminClient{base: base, key: key, hc: &http.Client{Timeout: 30 * time.Second}}, nil
}

// gatewayUp reports whether a Foundry Gateway answers /healthz at base.
func gatewayUp(ctx context.Context, base string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct {
		Status  string `json:"status"`
		Service string `json:"service"`
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil && h.Status == "ok" && h.Service == serviceName
}

// adminClient is the gateway's admin API, for the CLI.
type adminClient struct {
	base, key string
	hc        *http.Client
}

// apiError is an OpenAI-shaped error answer of the admin API.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code) }

// do sends one admin request; out, when not nil, receives the JSON answer
// and w the raw body.
func (a *adminClient) do(ctx context.Context, method, path string, body, out any, w io.Writer) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("api-key", a.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s: %w", a.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error.Message == "" {
			e.Error.Message = strings.TrimSpace(string(b))
		}
		ae := &apiError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
		if resp.StatusCode == http.StatusBadRequest {
			return usageError{cliFlagNames.Replace(ae.Error())}
		}
		return ae
	}
	if w != nil {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

const adminPath = "/gateway/admin"

// Create implements keyAdmin.
func (a *adminClient) Create(ctx context.Context, r auth.CreateRequest) (auth.Created, error) {
	var k auth.Created
	return k, a.do(ctx, http.MethodPost, adminPath+"/keys", r, &k, nil)
}

// Rotate implements keyAdmin.
func (a *adminClient) Rotate(ctx context.Context, id string, r auth.RotateRequest) (auth.Created, error) {
	var k auth.Created
	return k, a.do(ctx, http.MethodPost, adminPath+"/keys/"+url.PathEscape(id)+"/rotate", r, &k, nil)
}

// Revoke implements keyAdmin.
func (a *adminClient) Revoke(ctx context.Context, id string) (auth.Key, error) {
	var k auth.Key
	return k, a.do(ctx, http.MethodPost, adminPath+"/keys/"+url.PathEscape(id)+"/revoke", nil, &k, nil)
}

// Get implements keyAdmin.
func (a *adminClient) Get(ctx context.Context, id string) (auth.Key, error) {
	var k auth.Key
	return k, a.do(ctx, http.MethodGet, adminPath+"/keys/"+url.PathEscape(id), nil, &k, nil)
}

// List implements keyAdmin.
func (a *adminClient) List(ctx context.Context, team string) ([]auth.Key, error) {
	var l struct {
		Data []auth.Key `json:"data"`
	}
	return l.Data, a.do(ctx, http.MethodGet, adminPath+"/keys?team="+url.QueryEscape(team), nil, &l, nil)
}

// SetLimits implements limitsAdmin.
func (a *adminClient) SetLimits(ctx context.Context, s quota.Subject, o quota.Override) (quota.Subject, error) {
	v := quota.SubjectOverride{Subject: s, Override: o}.View()
	var out quota.OverrideView
	err := a.do(ctx, http.MethodPost, adminPath+"/limits", v, &out, nil)
	return quota.Subject{Kind: out.Kind, ID: out.ID}, err
}

// DeleteLimits implements limitsAdmin.
func (a *adminClient) DeleteLimits(ctx context.Context, s quota.Subject) (quota.Subject, error) {
	err := a.do(ctx, http.MethodDelete, adminPath+"/limits?kind="+url.QueryEscape(string(s.Kind))+"&id="+url.QueryEscape(s.ID), nil, nil, nil)
	return s, err
}

// ListLimits implements limitsAdmin.
func (a *adminClient) ListLimits(ctx context.Context) ([]quota.OverrideView, error) {
	var l struct {
		Data []quota.OverrideView `json:"data"`
	}
	return l.Data, a.do(ctx, http.MethodGet, adminPath+"/limits", nil, &l, nil)
}
