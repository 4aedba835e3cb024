package batch

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
)

func fileEntity(f *File) store.Entity {
	p := map[string]any{"Filename": f.Filename, "Purpose": f.Purpose, "Bytes": f.Bytes, "CreatedAt": f.CreatedAt}
	if !f.ExpiresAt.IsZero() {
		p["ExpiresAt"] = f.ExpiresAt
	}
	return store.Entity{PartitionKey: f.KeyID, RowKey: f.ID, Props: p}
}

func fileFrom(e store.Entity) *File {
	g := getter(e)
	return &File{ID: e.RowKey, KeyID: e.PartitionKey, Filename: g.s("Filename"), Purpose: g.s("Purpose"), Bytes: int64(g.i("Bytes")),
		CreatedAt: g.t("CreatedAt"), ExpiresAt: g.t("ExpiresAt")}
}

type getter store.Entity

func (g getter) s(n string) string       { v, _ := g.Props[n].(string); return v }
func (g getter) t(n string) time.Time    { v, _ := g.Props[n].(time.Time); return v.UTC() }
func (g getter) i(n string) int          { v, _ := g.Props[n].(int64); return int(v) }
func (g getter) json(n string, into any) { _ = json.Unmarshal([]byte(g.s(n)), into) }

func batchEntity(b *Batch) store.Entity {
	p := map[string]any{"Team": b.Team, "App": b.App, "Regions": strings.Join(b.Regions, ","), "Endpoint": b.Endpoint,
		"InputFileID": b.InputFileID, "CompletionWindow": b.CompletionWindow, "Model": b.Model, "Status": string(b.Status),
		"End": b.End, "OutputFileID": b.OutputFileID, "ErrorFileID": b.ErrorFileID, "Lines": int64(b.Lines),
		"Invalid": int64(b.Invalid), "Submitted": int64(b.Submitted), "Completed": int64(b.Completed), "Failed": int64(b.Failed),
		"OutputExpiresAfter": int64(b.OutputExpiresAfter / time.Second)}
	for k, t := range map[string]time.Time{"CreatedAt": b.CreatedAt, "InProgressAt": b.InProgressAt, "FinalizingAt": b.FinalizingAt,
		"CompletedAt": b.CompletedAt, "FailedAt": b.FailedAt, "ExpiredAt": b.ExpiredAt, "CancellingAt": b.CancellingAt,
		"CancelledAt": b.CancelledAt, "ExpiresAt": b.ExpiresAt} {
		if !t.IsZero() {
			p[k] = t
		}
	}
	if len(b.Errors) > 0 {
		j, _ := json.Marshal(b.Errors)
		p["Errors"] = string(j)
	}
	if len(b.Metadata) > 0 {
		j, _ := json.Marshal(b.Metadata)
		p["Metadata"] = string(j)
	}
	return store.Entity{PartitionKey: b.KeyID, RowKey: b.ID, Props: p}
}

func batchFrom(e store.Entity) *Batch {
	g := getter(e)
	b := &Batch{ID: e.RowKey, KeyID: e.PartitionKey, Team: g.s("Team"), App: g.s("App"), Endpoint: g.s("Endpoint"),
		InputFileID: g.s("InputFileID"), CompletionWindow: g.s("CompletionWindow"), Model: g.s("Model"), Status: Status(g.s("Status")),
		End: g.s("End"), OutputFileID: g.s("OutputFileID"), ErrorFileID: g.s("ErrorFileID"), Lines: g.i("Lines"),
		Invalid: g.i("Invalid"), Submitted: g.i("Submitted"), Completed: g.i("Completed"), Failed: g.i("Failed"),
		OutputExpiresAfter: time.Duration(g.i("OutputExpiresAfter")) * time.Second,
		CreatedAt:          g.t("CreatedAt"), InProgressAt: g.t("InProgressAt"), FinalizingAt: g.t("FinalizingAt"), CompletedAt: g.t("CompletedAt"),
		FailedAt: g.t("FailedAt"), ExpiredAt: g.t("ExpiredAt"), CancellingAt: g.t("CancellingAt"), CancelledAt: g.t("CancelledAt"),
		ExpiresAt: g.t("ExpiresAt"), etag: e.ETag}
	if r := g.s("Regions"); r != "" {
		b.Regions = strings.Split(r, ",")
	}
	g.json("Errors", &b.Errors)
	g.json("Metadata", &b.Metadata)
	return b
}
