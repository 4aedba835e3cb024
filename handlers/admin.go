package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/jsonkey"
	"github.com/foundry-gateway/gateway/internal/quota"
	"github.com/foundry-gateway/gateway/internal/route"
)

// backendStatus reports backend health for the admin endpoint.
type backendStatus interface {
	Status() []route.BackendStatus
}

// keyAdmin manages API keys (auth.Admin; `handler keys` uses the same).
type keyAdmin interface {
	Create(ctx context.Context, r auth.CreateRequest) (auth.Created, error)
	Rotate(ctx context.Context, id string, r auth.RotateRequest) (auth.Created, error)
	Revoke(ctx context.Context, id string) (auth.Key, error)
	Get(ctx context.Context, id string) (auth.Key, error)
	List(ctx context.Context, team string) ([]auth.Key, error)
}

// limitsAdmin manages limit overrides (quota.Admin; `handler limits` uses
// the same).
type limitsAdmin interface {
	Set(ctx context.Context, s quota.Subject, o quota.Override) (quota.Subject, error)
	Delete(ctx context.Context, s quota.Subject) (quota.Subject, error)
	List(ctx context.Context) ([]quota.OverrideView, error)
}

// adminPrefixes: under Azure Functions the host owns /admin/*, so every
// admin route is also served under /gateway/admin/*.
var adminPrefixes = [...]string{"/admin", "/gateway/admin"}

// registerAdmin adds the admin API. Every route needs a caller with the
// admin scope, except the usage report, which a non-admin caller may read
// for its own team.
func (g *gateway) registerAdmin(e *echo.Echo) {
	for _, p := range adminPrefixes {
		if g.Backends != nil {
			e.GET(p+"/backends", g.adminBackends)
		}
		if g.Keys != nil {
			e.POST(p+"/keys", g.adminCreateKey)
			e.GET(p+"/keys", g.adminListKeys)
			e.GET(p+"/keys/:id", g.adminGetKey)
			e.POST(p+"/keys/:id/rotate", g.adminRotateKey)
			e.POST(p+"/keys/:id/revoke", g.adminRevokeKey)
			e.DELETE(p+"/keys/:id", g.adminRevokeKey)
		}
		if g.Limits != nil {
			e.GET(p+"/limits", g.adminListLimits)
			e.POST(p+"/limits", g.adminSetLimits)
			e.DELETE(p+"/limits", g.adminDeleteLimits)
		}
		if g.AuditRecord != nil {
			e.GET(p+"/audit/:id", g.adminAudit)
		}
		if g.UsageReports != nil {
			e.GET(p+"/usage", UsageReport(g.UsageReports, g.usageAuthz, nil))
			e.GET(p+"/usage/ui", UsagePage())
		}
	}
}

// admin authenticates the caller and requires the admin scope.
func (g *gateway) admin(c echo.Context) (auth.Principal, error) {
	p, err := g.Auth.Authenticate(c.Request().Context(), c.Request().Header)
	if err != nil {
		return p, err
	}
	c.Set(ctxCaller, p.KeyID) // a refusal's log line names who was refused
	if !p.Scope.Admin {
		return p, httperr.Forbidden("admin_forbidden", "This credential does not have the admin scope needed for the gateway admin API.")
	}
	return p, nil
}

// usageAuthz lets admins read every team's usage and others their own.
func (g *gateway) usageAuthz(r *http.Request) (string, bool, error) {
	p, err := g.Auth.Authenticate(r.Context(), r.Header)
	if err != nil {
		return "", false, err
	}
	if p.Scope.AuditRead {
		return "", false, httperr.Forbidden("audit_read_only", "This credential has the audit:read scope: it may read audit records (GET /gateway/admin/audit/{request_id}) and nothing else.")
	}
	return p.Team, p.Scope.Admin || p.Scope.UsageRead, nil
}

// caller authenticates a caller of the OpenAI and jobs routes: a usage:read
// (finance) credential may not use them.
func (g *gateway) caller(ctx context.Context, h http.Header) (auth.Principal, error) {
	p, err := g.Auth.Authenticate(ctx, h)
	if err != nil {
		return p, err
	}
	if p.Scope.UsageRead {
		return p, httperr.Forbidden("usage_read_only", "This credential has the usage:read scope: it may read usage (GET /gateway/admin/usage) and nothing else.")
	}
	if p.Scope.AuditRead {
		return p, httperr.Forbidden("audit_read_only", "This credential has the audit:read scope: it may read audit records (GET /gateway/admin/audit/{request_id}) and nothing else.")
	}
	return p, nil
}

// adminBackends serves GET /admin/backends: health, cooling and load per backend.
func (g *gateway) adminBackends(c echo.Context) error {
	if _, err := g.admin(c); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct {
		Backends []route.BackendStatus `json:"backends"`
	}{g.Backends.Status()})
}

// adminCreateKey serves POST /admin/keys: 201 with the key, shown once.
func (g *gateway) adminCreateKey(c echo.Context) error {
	p, err := g.admin(c)
	if err != nil {
		return err
	}
	var req auth.CreateRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	k, err := g.Keys.Create(c.Request().Context(), req)
	if err != nil {
		return auth.HTTPError(err)
	}
	g.audit(c, p, "key created", k.Key)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, k)
}

// adminRotateKey serves POST /admin/keys/{id}/rotate: 201 with the new key
// (shown once) and the old one, which works until the overlap ends.
func (g *gateway) adminRotateKey(c echo.Context) error {
	p, err := g.admin(c)
	if err != nil {
		return err
	}
	var req auth.RotateRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	k, err := g.Keys.Rotate(c.Request().Context(), c.Param("id"), req)
	if err != nil {
		return auth.HTTPError(err)
	}
	g.audit(c, p, "key rotated", *k.Replaces, "new_key_id", k.ID)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, k)
}

// adminRevokeKey serves POST /admin/keys/{id}/revoke and DELETE /admin/keys/{id}.
func (g *gateway) adminRevokeKey(c echo.Context) error {
	p, err := g.admin(c)
	if err != nil {
		return err
	}
	k, err := g.Keys.Revoke(c.Request().Context(), c.Param("id"))
	if err != nil {
		return auth.HTTPError(err)
	}
	g.audit(c, p, "key revoked", k)
	return c.JSON(http.StatusOK, k)
}

// adminGetKey serves GET /admin/keys/{id} (never the secret).
func (g *gateway) adminGetKey(c echo.Context) error {
	if _, err := g.admin(c); err != nil {
		return err
	}
	k, err := g.Keys.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return auth.HTTPError(err)
	}
	return c.JSON(http.StatusOK, k)
}

// adminListKeys serves GET /admin/keys[?team=] (never the secrets).
func (g *gateway) adminListKeys(c echo.Context) error {
	if _, err := g.admin(c); err != nil {
		return err
	}
	ks, err := g.Keys.List(c.Request().Context(), c.QueryParam("team"))
	if err != nil {
		return auth.HTTPError(err)
	}
	return c.JSON(http.StatusOK, struct {
		Object string     `json:"object"`
		Data   []auth.Key `json:"data"`
	}{"list", ks})
}

// audit logs an admin action: who did what to which key (ids, never secrets).
func (g *gateway) audit(c echo.Context, by auth.Principal, what string, k auth.Key, kv ...any) {
	who := by.CredentialID
	if who == "" {
		who = by.KeyID // a token: jwt:<issuer>:<subject>
	}
	g.Log.Info("admin: "+what, append([]any{"request_id", requestIDOf(c), "by", who, "by_team", by.Team,
		"key_id", k.ID, "team", k.Team, "app", k.App}, kv...)...)
}

// decodeJSON reads a small JSON body strictly; an empty body is {}. A
// repeated key is refused: encoding/json would take the last one silently.
func decodeJSON(c echo.Context, v any) error {
	raw, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, 64<<10))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return httperr.New(http.StatusRequestEntityTooLarge, "request_too_large", "The request body is larger than the admin API accepts (64 KiB).")
	case err != nil:
		return bodyReadError(c, err)
	}
	if err := jsonkey.Check(raw); err != nil {
		return httperr.Wrap(err, http.StatusBadRequest, "invalid_request_error", "The request body is not valid: "+err.Error()+"; send each key once.")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return httperr.Wrap(err, http.StatusBadRequest, "invalid_request_error", "The request body is not valid: "+err.Error())
	}
	return nil
}

// limitsError maps quota.Admin errors onto the admin API's answers.
func limitsError(err error) error {
	if errors.Is(err, quota.ErrBadSubject) {
		return httperr.BadRequest("invalid_request_error", err.Error())
	}
	return httperr.Wrap(err, http.StatusServiceUnavailable, "limits_unavailable", "The limits table cannot be read or written right now.")
}

// adminListLimits serves GET /admin/limits: every override, in the field
// style of the keys API.
func (g *gateway) adminListLimits(c echo.Context) error {
	if _, err := g.admin(c); err != nil {
		return err
	}
	list, err := g.Limits.List(c.Request().Context())
	if err != nil {
		return limitsError(err)
	}
	return c.JSON(http.StatusOK, struct {
		Object string               `json:"object"`
		Data   []quota.OverrideView `json:"data"`
	}{"list", list})
}

// adminSetLimits serves POST /admin/limits with {"kind","id","rpm","tpm",
// "monthly_tokens"}: fields left out keep their stored value; 200 with the
// subject as stored (a key's lineage id).
func (g *gateway) adminSetLimits(c echo.Context) error {
	p, err := g.admin(c)
	if err != nil {
		return err
	}
	var v quota.OverrideView
	if err := decodeJSON(c, &v); err != nil {
		return err
	}
	s, err := g.Limits.Set(c.Request().Context(), quota.Subject{Kind: v.Kind, ID: v.ID}, v.Override())
	if err != nil {
		return limitsError(err)
	}
	g.Log.Info("admin: limits set", "request_id", requestIDOf(c), "by_team", p.Team, "kind", string(s.Kind), "id", s.ID)
	v.Kind, v.ID = s.Kind, s.ID
	return c.JSON(http.StatusOK, v)
}

// adminDeleteLimits serves DELETE /admin/limits?kind=K&id=ID (an app id is
// team/app, so it is a query parameter, not a path segment).
func (g *gateway) adminDeleteLimits(c echo.Context) error {
	p, err := g.admin(c)
	if err != nil {
		return err
	}
	s, err := g.Limits.Delete(c.Request().Context(), quota.Subject{Kind: quota.Kind(c.QueryParam("kind")), ID: c.QueryParam("id")})
	if err != nil {
		return limitsError(err)
	}
	g.Log.Info("admin: limits deleted", "request_id", requestIDOf(c), "by_team", p.Team, "kind", string(s.Kind), "id", s.ID)
	return c.JSON(http.StatusOK, quota.OverrideView{Kind: s.Kind, ID: s.ID})
}
