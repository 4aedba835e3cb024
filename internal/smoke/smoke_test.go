package smoke

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeGateway answers like the gateway; the knobs break one check each.
type fakeGateway struct {
	cutStream bool   // the stream ends without [DONE]
	jobEnd    string // final job status
	polls     atomic.Int32
}

func (f *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer k" {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":{"code":"invalid_api_key","message":"Incorrect API key provided.","type":"invalid_request_error"}}`)
		return
	}
	switch {
	case r.URL.Path == "/openai/v1/models":
		fmt.Fprint(w, `{"object":"list","data":[{"id":"gpt-4o-mini"}]}`)
	case r.URL.Path == "/openai/v1/chat/completions" && r.Header.Get("Prefer") == "respond-async":
		w.Header().Set("Operation-Location", "/jobs/job_1")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprint(w, `{"id":"job_1","status":"queued"}`)
	case r.URL.Path == "/openai/v1/chat/completions":
		var body bytes.Buffer
		body.ReadFrom(r.Body)
		if strings.Contains(body.String(), `"stream":true`) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"choices\":[]}\n\n")
			if !f.cutStream {
				fmt.Fprint(w, "data: [DONE]\n\n")
			}
			return
		}
		fmt.Fprint(w, `{"choices":[{"message":{"content":"up"}}],"usage":{"total_tokens":3}}`)
	case r.URL.Path == "/jobs/job_1":
		status := "running"
		if f.polls.Add(1) >= 2 {
			status = f.jobEnd
		}
		fmt.Fprintf(w, `{"id":"job_1","status":%q,"error":"backend refused"}`, status)
	case r.URL.Path == "/gateway/admin/usage":
		fmt.Fprint(w, `{"from":"2026-12-01","to":"2026-12-05","rows":[]}`)
	default:
		http.NotFound(w, r)
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		gw       *fakeGateway
		key      string
		wantFail []string
	}{
		{"all good", &fakeGateway{jobEnd: "succeeded"}, "k", nil},
		{"cut stream", &fakeGateway{jobEnd: "succeeded", cutStream: true}, "k", []string{"stream"}},
		{"failed job", &fakeGateway{jobEnd: "failed"}, "k", []string{"async job"}},
		{"wrong key", &fakeGateway{jobEnd: "succeeded"}, "nope", []string{"models", "chat", "stream", "async job", "usage report"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.gw)
			defer srv.Close()
			res := Run(t.Context(), Options{URL: srv.URL + "/", Key: tt.key, PollInterval: time.Millisecond, JobTimeout: 5 * time.Second})
			var failed []string
			for _, r := range res {
				if !r.OK {
					failed = append(failed, r.Name)
				}
			}
			if len(res) != 5 || strings.Join(failed, ",") != strings.Join(tt.wantFail, ",") {
				t.Errorf("failed checks %v of %d, want %v: %+v", failed, len(res), tt.wantFail, res)
			}
			var out bytes.Buffer
			if n := Write(&out, srv.URL, res); n != len(tt.wantFail) {
				t.Errorf("Write returned %d failures, want %d", n, len(tt.wantFail))
			}
			if tt.key != "k" && !strings.Contains(out.String(), "invalid_api_key") {
				t.Errorf("output does not show the gateway's error:\n%s", out.String())
			}
		})
	}
}
