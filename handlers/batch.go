package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/batch"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/quota"
	"github.com/foundry-gateway/gateway/internal/route"
	"github.com/foundry-gateway/gateway/internal/usage"
)

// batchAPI is the Batch API (files and batches) the handlers serve.
type batchAPI interface {
	MaxFileBytes() int64
	Upload(ctx context.Context, keyID, filename, purpose string, data []byte, expiresAfter time.Duration) (*batch.File, error)
	File(ctx context.Context, keyID, id string) (*batch.File, error)
	Content(ctx context.Context, keyID, id string) (*batch.File, []byte, error)
	Files(ctx context.Context, keyID, purpose string) ([]*batch.File, error)
	DeleteFile(ctx context.Context, keyID, id string) error
	Create(ctx context.Context, c batch.Caller, req batch.CreateRequest, check batch.Check) (*batch.Batch, error)
	Get(ctx context.Context, keyID, id string) (*batch.Batch, error)
	List(ctx context.Context, keyID string) ([]*batch.Batch, error)
	Cancel(ctx context.Context, keyID, id string) (*batch.Batch, error)
}

// registerBatch serves /files and /batches on the v1 paths and on the
// Azure paths (/openai/files, /openai/batches with api-version; see
// https://learn.microsoft.com/rest/api/azureopenai/batch/create:
// POST {endpoint}/openai/batches?api-version=2024-10-21).
func (g *gateway) registerBatch(e *echo.Echo) {
	for _, prefix := range []string{"/openai/v1", "/v1", "/openai"} {
		azure := prefix == "/openai"
		e.POST(prefix+"/files", g.batchRoute(azure, g.uploadFile))
		e.GET(prefix+"/files", g.batchRoute(azure, g.listFiles))
		e.GET(prefix+"/files/:id", g.batchRoute(azure, g.getFile))
		e.GET(prefix+"/files/:id/content", g.batchRoute(azure, g.fileContent))
		e.DELETE(prefix+"/files/:id", g.batchRoute(azure, g.deleteFile))
		e.POST(prefix+"/batches", g.batchRoute(azure, g.createBatch))
		e.GET(prefix+"/batches", g.batchRoute(azure, g.listBatches))
		e.GET(prefix+"/batches/:id", g.batchRoute(azure, g.getBatch))
		e.POST(prefix+"/batches/:id/cancel", g.batchRoute(azure, g.cancelBatch))
	}
}

// batchRoute authenticates the caller and checks api-version on the Azure paths.
func (g *gateway) batchRoute(azure bool, h func(c echo.Context, p auth.Principal) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		if g.Batches == nil {
			return httperr.NotFound("404", "The Batch API is not enabled on this gateway.")
		}
		p, err := g.caller(c.Request().Context(), c.Request().Header)
		if err != nil {
			return err
		}
		c.Set(ctxCaller, p.KeyID)
		if azure && c.QueryParam("api-version") == "" {
			return &httperr.Error{Status: http.StatusBadRequest, Code: "missing_api_version", Param: "api-version",
				Msg: "The api-version query parameter is required on /openai/files and /openai/batches (for example api-version=2024-10-21)."}
		}
		return h(c, p)
	}
}

// uploadFile takes multipart/form-data with file, purpose and optionally
// expires_after[anchor] / expires_after[seconds].
func (g *gateway) uploadFile(c echo.Context, p auth.Principal) error {
	r := c.Request()
	max := g.Batches.MaxFileBytes()
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "multipart/form-data" {
		return httperr.BadRequest("invalid_request_error", "Upload the file as multipart/form-data with the fields file and purpose.")
	}
	r.Body = http.MaxBytesReader(c.Response(), r.Body, max+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		return badRequest(err)
	}
	var (
		data              []byte
		filename, purpose string
		anchor, seconds   string
		haveFile          bool
	)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return uploadErr(err, max)
		}
		field := part.FormName()
		limit := int64(4096)
		if field == "file" {
			limit = max
		}
		b, err := io.ReadAll(io.LimitReader(part, limit+1))
		if err != nil {
			return uploadErr(err, max)
		}
		if int64(len(b)) > limit {
			if field == "file" {
				return tooLargeFile(max)
			}
			return &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: field, Msg: field + " is too long."}
		}
		switch field {
		case "file":
			data, filename, haveFile = b, part.FileName(), true
		case "purpose":
			purpose = string(b)
		case "expires_after[anchor]":
			anchor = string(b)
		case "expires_after[seconds]":
			seconds = string(b)
		}
	}
	if !haveFile {
		return &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "file", Msg: "The file field is required."}
	}
	var expires time.Duration
	if anchor != "" || seconds != "" {
		n, err := strconv.ParseInt(seconds, 10, 64)
		if anchor != "created_at" || err != nil || n < 3600 || n > 30*24*3600 {
			return &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "expires_after",
				Msg: "expires_after needs anchor created_at and seconds between 3600 (1 hour) and 2592000 (30 days)."}
		}
		expires = time.Duration(n) * time.Second
	}
	if filename == "" {
		filename = "upload.jsonl"
	}
	f, err := g.Batches.Upload(r.Context(), p.KeyID, filename, purpose, data, expires)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, f.View())
}

func tooLargeFile(max int64) error {
	return httperr.New(http.StatusRequestEntityTooLarge, "file_too_large",
		"The file is larger than the "+strconv.FormatInt(max, 10)+" bytes a batch input file may have.")
}

func uploadErr(err error, max int64) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLargeFile(max)
	}
	return badRequest(err)
}

// pageParams reads limit (1..maxLimit) and after.
func pageParams(c echo.Context, def, maxLimit int) (int, string, error) {
	limit := def
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return 0, "", &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "limit",
				Msg: "limit must be 1.." + strconv.Itoa(maxLimit) + "."}
		}
		limit = n
	}
	return limit, c.QueryParam("after"), nil
}

// listPage is an OpenAI cursor page.
type listPage[T any] struct {
	Object  string  `json:"object"`
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

// page cuts ids/items after `after`, up to limit.
func page[T any](items []T, id func(T) string, after string, limit int) (listPage[T], error) {
	if after != "" {
		i := slices.IndexFunc(items, func(x T) bool { return id(x) == after })
		if i < 0 {
			return listPage[T]{}, &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "after",
				Msg: "after must be an id from the previous page (its last_id)."}
		}
		items = items[i+1:]
	}
	out := listPage[T]{Object: "list", Data: items[:min(limit, len(items))], HasMore: len(items) > limit}
	if n := len(out.Data); n > 0 {
		f, l := id(out.Data[0]), id(out.Data[n-1])
		out.FirstID, out.LastID = &f, &l
	}
	return out, nil
}

func (g *gateway) listFiles(c echo.Context, p auth.Principal) error {
	limit, after, err := pageParams(c, 10000, 10000)
	if err != nil {
		return err
	}
	files, err := g.Batches.Files(c.Request().Context(), p.KeyID, c.QueryParam("purpose"))
	if err != nil {
		return err
	}
	switch c.QueryParam("order") {
	case "asc":
		slices.Reverse(files)
	case "", "desc":
	default:
		return &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "order", Msg: "order must be asc or desc."}
	}
	views := make([]batch.FileView, len(files))
	for i, f := range files {
		views[i] = f.View()
	}
	out, err := page(views, func(v batch.FileView) string { return v.ID }, after, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (g *gateway) getFile(c echo.Context, p auth.Principal) error {
	f, err := g.Batches.File(c.Request().Context(), p.KeyID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, f.View())
}

func (g *gateway) fileContent(c echo.Context, p auth.Principal) error {
	f, b, err := g.Batches.Content(c.Request().Context(), p.KeyID, c.Param("id"))
	if err != nil {
		return err
	}
	ct := "application/octet-stream"
	if strings.HasSuffix(f.Filename, ".jsonl") {
		ct = "application/jsonl"
	}
	return c.Blob(http.StatusOK, ct, b)
}

func (g *gateway) deleteFile(c echo.Context, p auth.Principal) error {
	id := c.Param("id")
	if err := g.Batches.DeleteFile(c.Request().Context(), p.KeyID, id); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"id": id, "object": "file", "deleted": true})
}

func (g *gateway) createBatch(c echo.Context, p auth.Principal) error {
	body, err := readBody(c, 64<<10)
	if err != nil {
		return err
	}
	var req batch.CreateRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return badRequest(err)
	}
	ctx := c.Request().Context()
	// The batch counts as one request against the caller's rate limits and
	// is refused once a monthly budget is spent (estimate: one token). Its
	// lines' tokens are charged to the budgets as they run, like jobs.
	if g.Quota != nil {
		ticket, err := g.Quota.Admit(ctx, c.Response().Header(), quota.Subjects(p.KeyID, p.Team, p.App),
			openai.Request{Op: openai.OpChat, MaxOutput: 1, N: 1}, nil)
		if err != nil {
			return err
		}
		defer ticket.SettleUsage(usage.Usage{Reported: true})
	}
	check := func(ctx context.Context, op openai.Op, body []byte) (openai.Request, []byte, error) {
		req, err := openai.Parse(op, openai.StyleV1, "", "", body)
		if err != nil {
			return req, nil, badRequest(err)
		}
		if req.Stream {
			return req, nil, &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "stream", Msg: "A batch request cannot stream."}
		}
		if err := p.Scope.CheckModel(req.Model); err != nil {
			return req, nil, err
		}
		m, err := g.Router.Model(req.Model)
		if errors.Is(err, route.ErrUnknownModel) {
			return req, nil, &httperr.Error{Status: http.StatusNotFound, Code: "model_not_found", Param: "model",
				Msg: "The model " + req.Model + " does not exist on this gateway."}
		}
		if err != nil {
			return req, nil, err
		}
		body, _, err = p.Scope.WithCaps(m.Caps).Admit(&req, true, body)
		return req, body, err
	}
	b, err := g.Batches.Create(ctx, batch.Caller{KeyID: p.KeyID, Team: p.Team, App: p.App, Regions: p.Scope.Regions}, req, check)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, b.View())
}

func (g *gateway) getBatch(c echo.Context, p auth.Principal) error {
	b, err := g.Batches.Get(c.Request().Context(), p.KeyID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, b.View())
}

func (g *gateway) listBatches(c echo.Context, p auth.Principal) error {
	limit, after, err := pageParams(c, 20, 100)
	if err != nil {
		return err
	}
	list, err := g.Batches.List(c.Request().Context(), p.KeyID)
	if err != nil {
		return err
	}
	views := make([]batch.BatchView, len(list))
	for i, b := range list {
		views[i] = b.View()
	}
	out, err := page(views, func(v batch.BatchView) string { return v.ID }, after, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (g *gateway) cancelBatch(c echo.Context, p auth.Principal) error {
	b, err := g.Batches.Cancel(c.Request().Context(), p.KeyID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, b.View())
}
