package handlers

import (
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/route"
)

// backendStatus reports backend health for the admin endpoint.
type backendStatus interface {
	Status() []route.BackendStatus
}

// adminBackends serves GET /admin/backends (and /gateway/admin/backends:
// under Azure Functions the host owns /admin/*). Callers need a gateway key
// of a team listed in auth.adminTeams; a proper admin scope comes with
// Entra ID client identities.
func (g *gateway) adminBackends(c echo.Context) error {
	p, err := g.Auth.Authenticate(c.Request().Context(), c.Request().Header)
	if err != nil {
		return err
	}
	if !slices.Contains(g.AdminTeams, p.Team) {
		return httperr.Forbidden("admin_forbidden", "This API key's team may not use the gateway admin API (see auth.adminTeams).")
	}
	return c.JSON(http.StatusOK, struct {
		Backends []route.BackendStatus `json:"backends"`
	}{g.Backends.Status()})
}
