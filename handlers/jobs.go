package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/jobs"
)

// jobStore is what the jobs API reads and changes.
type jobStore interface {
	Get(ctx context.Context, keyID, id string) (*jobs.Job, error)
	List(ctx context.Context, keyID string, status jobs.Status, limit int) ([]*jobs.Job, error)
	Cancel(ctx context.Context, keyID, id string) (*jobs.Job, error)
}

// jobView is a job as the API shows it: the result inline once done.
type jobView struct {
	*jobs.Job
	Object string           `json:"object"`
	Result *json.RawMessage `json:"result,omitempty"`
}

func viewOf(j *jobs.Job) jobView {
	v := jobView{Job: j, Object: "job"}
	if len(j.ResultBody) > 0 {
		var raw json.RawMessage
		if json.Valid(j.ResultBody) {
			raw = j.ResultBody
		} else {
			raw, _ = json.Marshal(string(j.ResultBody))
		}
		v.Result = &raw
	}
	return v
}

func (g *gateway) registerJobs(e *echo.Echo) {
	e.GET("/jobs/:id", g.getJob)
	e.DELETE("/jobs/:id", g.cancelJob)
	e.GET("/jobs", g.listJobs)
}

func (g *gateway) jobsEnabled() error {
	if g.Jobs == nil {
		return httperr.NotFound("404", "Low-priority jobs are not enabled on this gateway.")
	}
	return nil
}

func (g *gateway) getJob(c echo.Context) error {
	if err := g.jobsEnabled(); err != nil {
		return err
	}
	p, err := g.caller(c.Request().Context(), c.Request().Header)
	if err != nil {
		return err
	}
	j, err := g.Jobs.Get(c.Request().Context(), p.KeyID, c.Param("id"))
	if errors.Is(err, jobs.ErrNotFound) {
		return httperr.NotFound("job_not_found", "No job "+c.Param("id")+" for this key.")
	}
	if err != nil {
		return err
	}
	if !j.Status.Terminal() {
		c.Response().Header().Set("Retry-After", "5")
	}
	return c.JSON(http.StatusOK, viewOf(j))
}

func (g *gateway) cancelJob(c echo.Context) error {
	if err := g.jobsEnabled(); err != nil {
		return err
	}
	p, err := g.caller(c.Request().Context(), c.Request().Header)
	if err != nil {
		return err
	}
	j, err := g.Jobs.Cancel(c.Request().Context(), p.KeyID, c.Param("id"))
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return httperr.NotFound("job_not_found", "No job "+c.Param("id")+" for this key.")
	case errors.Is(err, jobs.ErrConflict):
		return httperr.New(http.StatusConflict, "job_not_cancellable", "Only queued jobs can be cancelled; this one is "+string(j.Status)+".")
	case err != nil:
		return err
	}
	return c.JSON(http.StatusOK, viewOf(j))
}

func (g *gateway) listJobs(c echo.Context) error {
	if err := g.jobsEnabled(); err != nil {
		return err
	}
	p, err := g.caller(c.Request().Context(), c.Request().Header)
	if err != nil {
		return err
	}
	status := jobs.Status(c.QueryParam("status"))
	switch status {
	case "", jobs.StatusQueued, jobs.StatusRunning, jobs.StatusSucceeded, jobs.StatusFailed, jobs.StatusCancelled:
	default:
		return &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "status",
			Msg: "status must be queued, running, succeeded, failed or cancelled."}
	}
	limit := 100
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "limit", Msg: "limit must be 1..1000."}
		}
		limit = n
	}
	// Pages, newest first: after=<job id> continues after that job (the
	// last_id of the page before); has_more says whether another page
	// follows. The whole list is read either way (one partition).
	list, err := g.Jobs.List(c.Request().Context(), p.KeyID, status, 0)
	if err != nil {
		return err
	}
	if after := c.QueryParam("after"); after != "" {
		i := slices.IndexFunc(list, func(j *jobs.Job) bool { return j.ID == after })
		if i < 0 {
			return &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "after",
				Msg: "after must be the id of one of your jobs in this listing (the last_id of the previous page)."}
		}
		list = list[i+1:]
	}
	out := struct {
		Object  string    `json:"object"`
		Data    []jobView `json:"data"`
		FirstID *string   `json:"first_id"`
		LastID  *string   `json:"last_id"`
		HasMore bool      `json:"has_more"`
	}{Object: "list", Data: []jobView{}, HasMore: len(list) > limit}
	for _, j := range list[:min(limit, len(list))] {
		out.Data = append(out.Data, viewOf(j))
	}
	if n := len(out.Data); n > 0 {
		out.FirstID, out.LastID = &out.Data[0].ID, &out.Data[n-1].ID
	}
	return c.JSON(http.StatusOK, out)
}
