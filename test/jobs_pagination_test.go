package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestJobsPagination pages through GET /jobs with limit and after: newest
// first, no job twice or missing, has_more on every page but the last.
func TestJobsPagination(t *testing.T) {
	s := startStack(t, stackOptions{extraTop: "timers: { drain: 1h }"}) // jobs stay queued
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, submitJob(t, s.URL, s.Key, chatBody(fmt.Sprintf("job %d", i)), nil).ID)
		time.Sleep(2 * time.Millisecond) // distinct creation times: a total order
	}
	type page struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
		FirstID *string `json:"first_id"`
		LastID  *string `json:"last_id"`
		HasMore bool    `json:"has_more"`
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("more pages than jobs")
		}
		q := "limit=2"
		if after != "" {
			q += "&after=" + after
		}
		code, _, b := jcall(t, http.MethodGet, s.URL+"/jobs?"+q, s.Key, "", nil)
		var p page
		if code != http.StatusOK || json.Unmarshal(b, &p) != nil {
			t.Fatalf("GET /jobs?%s: %d %s", q, code, b)
		}
		for _, j := range p.Data {
			got = append(got, j.ID)
		}
		if len(p.Data) > 0 && (*p.FirstID != p.Data[0].ID || *p.LastID != p.Data[len(p.Data)-1].ID) {
			t.Errorf("page %d: first_id/last_id %s/%s do not match its data", pages, *p.FirstID, *p.LastID)
		}
		if !p.HasMore {
			break
		}
		after = *p.LastID
	}
	want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("paged ids %v, want newest first %v", got, want)
	}
	if code, _, b := jcall(t, http.MethodGet, s.URL+"/jobs?after=job_nope", s.Key, "", nil); code != http.StatusBadRequest {
		t.Errorf("after an unknown job: %d %s, want 400", code, b)
	}
}
