package handlers

import (
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/proxy"
)

// registerResponses adds the calls on a stored Responses API response
// under prefix (/openai/v1/responses or the Azure SDKs'
// /openai/responses): GET and DELETE {id}, POST {id}/cancel and GET
// {id}/input_items. A response lives on the backend that created it, so
// each goes there (the affinity table knows which), in the client's path
// style (backendPrefix).
func (g *gateway) registerResponses(e *echo.Echo, prefix, backendPrefix string) {
	e.GET(prefix+"/:id", g.responseResource(http.MethodGet, backendPrefix, ""))
	e.DELETE(prefix+"/:id", g.responseResource(http.MethodDelete, backendPrefix, ""))
	e.POST(prefix+"/:id/cancel", g.responseResource(http.MethodPost, backendPrefix, "/cancel"))
	e.GET(prefix+"/:id/input_items", g.responseResource(http.MethodGet, backendPrefix, "/input_items"))
}

func (g *gateway) responseResource(method, backendPrefix, sub string) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		p, err := g.Auth.Authenticate(r.Context(), r.Header)
		if err != nil {
			return err
		}
		c.Set(ctxCaller, p.KeyID)
		id := c.Param("id")
		notFound := &httperr.Error{Status: http.StatusNotFound, Code: "response_not_found",
			Msg: "No response with id '" + id + "' is known to this gateway (it may have expired, or was created with store: false)."}
		if g.ResponseBackend == nil || g.Resources == nil || id == "" || strings.ContainsAny(id, "/?#") {
			return notFound
		}
		b, owner, ok := g.ResponseBackend(r.Context(), id)
		// Only the caller that created a response may use it (its key's
		// lineage, or its token identity), as on the backend, where a
		// response belongs to the resource's one credential; a caller
		// limited to regions never reaches a backend outside them.
		if !ok || (owner != "" && owner != p.KeyID) || (len(p.Scope.Regions) > 0 && !slices.Contains(p.Scope.Regions, b.Region)) {
			return notFound
		}
		var body []byte
		if method == http.MethodPost {
			if body, err = readBody(c, g.MaxBodyBytes); err != nil {
				return err
			}
			if len(body) == 0 {
				body = nil
			}
		}
		g.Resources.ForwardResource(c.Response(), r, proxy.Resource{Backend: b, Method: method,
			Path: backendPrefix + "/" + id + sub, RawQuery: r.URL.RawQuery, Body: body, RequestID: requestIDOf(c)})
		return nil
	}
}

// model serves GET /openai/v1/models/{id}: the alias if the caller may
// call it, else 404 (as for an alias that does not exist).
func (g *gateway) model(c echo.Context) error {
	p, err := g.Auth.Authenticate(c.Request().Context(), c.Request().Header)
	if err != nil {
		return err
	}
	id := c.Param("id")
	if _, err := g.Router.Model(id); err != nil || !p.Scope.AllowsModel(id) {
		return &httperr.Error{Status: http.StatusNotFound, Code: "model_not_found", Param: "model",
			Msg: "The model " + id + " does not exist on this gateway."}
	}
	return c.JSON(http.StatusOK, modelView{ID: id, Object: "model", OwnedBy: "foundry-gateway"})
}

// modelView is one entry of GET /openai/v1/models.
type modelView struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}
