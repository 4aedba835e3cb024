package sim

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func createResp(t *testing.T, srv *httptest.Server, body string) (int, map[string]any) {
	t.Helper()
	resp := post(t, srv, "/openai/v1/responses", body)
	return resp.StatusCode, decodeJSON(t, resp)
}

func TestResponsesBody(t *testing.T) {
	_, srv, _ := newTestServer(t, testConfig())
	tests := []struct {
		name           string
		body           string
		wantInput      int64 // 0 = not checked
		wantStatus     string
		wantItems      []string
		wantOutput     int64 // 0 = not checked
		wantReasoning  bool
		wantIncomplete bool
	}{
		// "hello there" = 11 bytes → 3 tokens, +3 for the message, +3 for the reply.
		{"string input", `{"model":"chat","input":"hello there"}`, 9, "completed", []string{"message"}, 0, false, false},
		// + "Be brief." = 9 bytes → 3 tokens + 3.
		{"instructions", `{"model":"chat","input":"hello there","instructions":"Be brief."}`, 15, "completed", []string{"message"}, 0, false, false},
		{"message array", `{"model":"chat","input":[{"role":"user","content":"hello there"},{"type":"message","role":"user","content":[{"type":"input_text","text":"more"}]}]}`, 9 + 1 + 3, "completed", []string{"message"}, 0, false, false},
		{"function output item", `{"model":"chat","input":[{"type":"function_call_output","call_id":"c1","output":"42"}]}`, 0, "completed", []string{"message"}, 0, false, false},
		{"reasoning model", `{"model":"reason","input":"think hard"}`, 0, "completed", []string{"reasoning", "message"}, 0, true, false},
		{"max_output_tokens", `{"model":"chat","input":"hello there","max_output_tokens":16}`, 0, "incomplete", []string{"message"}, 16, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, m := createResp(t, srv, tt.body)
			if status != 200 {
				t.Fatalf("status: got %d, want 200: %v", status, m)
			}
			if id := str(t, m, "id"); !strings.HasPrefix(id, "resp_") {
				t.Errorf("id: got %q, want resp_…", id)
			}
			if got := str(t, m, "object"); got != "response" {
				t.Errorf("object: got %q, want response", got)
			}
			if got := str(t, m, "status"); got != tt.wantStatus {
				t.Errorf("status: got %q, want %q", got, tt.wantStatus)
			}
			output := at(t, m, "output").([]any)
			if len(output) != len(tt.wantItems) {
				t.Fatalf("output items: got %d, want %d", len(output), len(tt.wantItems))
			}
			for i, want := range tt.wantItems {
				if got := str(t, m, fmt.Sprintf("output.%d.type", i)); got != want {
					t.Errorf("output[%d].type: got %q, want %q", i, got, want)
				}
			}
			msg := fmt.Sprintf("output.%d", len(output)-1)
			if got := str(t, m, msg+".content.0.type"); got != "output_text" {
				t.Errorf("content type: got %q, want output_text", got)
			}
			words := int64(len(strings.Fields(str(t, m, msg+".content.0.text"))))
			in, out := num(t, m, "usage.input_tokens"), num(t, m, "usage.output_tokens")
			reasoning := num(t, m, "usage.output_tokens_details.reasoning_tokens")
			if tt.wantInput != 0 && in != tt.wantInput {
				t.Errorf("input_tokens: got %d, want %d", in, tt.wantInput)
			}
			if tt.wantOutput != 0 && out != tt.wantOutput {
				t.Errorf("output_tokens: got %d, want %d", out, tt.wantOutput)
			}
			if got := num(t, m, "usage.total_tokens"); got != in+out {
				t.Errorf("total_tokens: got %d, want %d", got, in+out)
			}
			if words+reasoning != out {
				t.Errorf("words %d + reasoning %d: want output_tokens %d", words, reasoning, out)
			}
			if (reasoning > 0) != tt.wantReasoning {
				t.Errorf("reasoning_tokens: got %d, want reasoning %v", reasoning, tt.wantReasoning)
			}
			at(t, m, "usage.input_tokens_details.cached_tokens")
			if tt.wantIncomplete {
				if got := str(t, m, "incomplete_details.reason"); got != "max_output_tokens" {
					t.Errorf("incomplete_details.reason: got %q, want max_output_tokens", got)
				}
			} else if at(t, m, "incomplete_details") != nil {
				t.Errorf("incomplete_details: got %v, want null", at(t, m, "incomplete_details"))
			}
		})
	}
	t.Run("max_output_tokens below 16", func(t *testing.T) {
		status, m := createResp(t, srv, `{"model":"chat","input":"x","max_output_tokens":5}`)
		if status != 400 || str(t, m, "error.param") != "max_output_tokens" {
			t.Errorf("got %d %v, want 400 on max_output_tokens", status, m)
		}
	})
}

func TestResponsesStream(t *testing.T) {
	tests := []struct {
		name       string
		model      string
		wantEvents []string // event types in order; "delta*" = one or more deltas
		terminal   string
		extra      string
	}{
		{"chat model", "chat", []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
			"delta*", "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"}, "response.completed", ""},
		{"reasoning model", "reason", []string{"response.created", "response.in_progress", "response.output_item.added", "response.output_item.done",
			"response.output_item.added", "response.content_part.added", "delta*", "response.output_text.done", "response.content_part.done",
			"response.output_item.done", "response.completed"}, "response.completed", ""},
		{"incomplete", "chat", []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
			"delta*", "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"}, "response.incomplete", `,"max_output_tokens":16`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, srv, _ := newTestServer(t, testConfig())
			body := `{"model":"` + tt.model + `","input":"stream this please"` + tt.extra
			_, whole := createResp(t, srv, body+`}`)
			events := streamEvents(t, post(t, srv, "/openai/v1/responses", body+`,"stream":true}`))

			var names []string
			var text strings.Builder
			for i, e := range events {
				m := jsonOf(t, e)
				if got := str(t, m, "type"); got != e.name {
					t.Errorf("event %d: type %q, event name %q", i, got, e.name)
				}
				if got := num(t, m, "sequence_number"); got != int64(i) {
					t.Errorf("event %d: sequence_number %d", i, got)
				}
				if e.name == "response.output_text.delta" {
					text.WriteString(str(t, m, "delta"))
					if len(names) > 0 && names[len(names)-1] == "delta*" {
						continue
					}
					names = append(names, "delta*")
					continue
				}
				names = append(names, e.name)
			}
			if got, want := strings.Join(names, " "), strings.Join(tt.wantEvents, " "); got != want {
				t.Errorf("events:\ngot  %s\nwant %s", got, want)
			}
			last := jsonOf(t, events[len(events)-1])
			if got, want := num(t, last, "response.usage.output_tokens"), num(t, whole, "usage.output_tokens"); got != want {
				t.Errorf("streamed output_tokens: got %d, want %d", got, want)
			}
			items := at(t, whole, "output").([]any)
			wantText := str(t, whole, fmt.Sprintf("output.%d.content.0.text", len(items)-1))
			if got := text.String(); got != wantText {
				t.Errorf("deltas: got %q, want %q", got, wantText)
			}
			created := jsonOf(t, events[0])
			if got := str(t, created, "response.status"); got != "in_progress" {
				t.Errorf("created status: got %q, want in_progress", got)
			}
			if str(t, created, "response.id") != str(t, last, "response.id") {
				t.Errorf("response id changed during the stream")
			}
			if got := s.Usage()["chat"].Requests + s.Usage()["reason"].Requests; got != 2 {
				t.Errorf("Usage requests: got %d, want 2", got)
			}
		})
	}
}

func TestPreviousResponseID(t *testing.T) {
	_, srv, _ := newTestServer(t, testConfig())
	_, other, _ := newTestServer(t, testConfig())

	_, first := createResp(t, srv, `{"model":"chat","input":"first turn"}`)
	id := str(t, first, "id")
	_, unstored := createResp(t, srv, `{"model":"chat","input":"first turn","store":false}`)

	tests := []struct {
		name       string
		srv        *httptest.Server
		prev       string
		wantStatus int
		wantCode   string
	}{
		{"same instance", srv, id, 200, ""},
		{"unknown id", srv, "resp_nope", 400, "previous_response_not_found"},
		{"another instance", other, id, 400, "previous_response_not_found"},
		{"store false", srv, str(t, unstored, "id"), 400, "previous_response_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, m := createResp(t, tt.srv, `{"model":"chat","input":"second turn","previous_response_id":"`+tt.prev+`"}`)
			if status != tt.wantStatus {
				t.Fatalf("status: got %d, want %d: %v", status, tt.wantStatus, m)
			}
			if tt.wantStatus != 200 {
				if got := str(t, m, "error.code"); got != tt.wantCode {
					t.Errorf("error.code: got %q, want %q", got, tt.wantCode)
				}
				return
			}
			// The earlier turn is context: "second turn" is 11 bytes → 3 + 3 + 3, plus all of turn one.
			if got, want := num(t, m, "usage.input_tokens"), 9+num(t, first, "usage.total_tokens"); got != want {
				t.Errorf("input_tokens: got %d, want %d", got, want)
			}
			if got := str(t, m, "previous_response_id"); got != tt.prev {
				t.Errorf("previous_response_id: got %q, want %q", got, tt.prev)
			}
		})
	}
}

func TestGetResponse(t *testing.T) {
	_, srv, _ := newTestServer(t, testConfig())
	_, created := createResp(t, srv, `{"model":"chat","input":"keep me"}`)
	id := str(t, created, "id")
	// The azure SDK posts to /openai/responses?api-version=… with the model in the body.
	azureResp := post(t, srv, "/openai/responses?api-version=2025-04-01-preview", `{"model":"chat","input":"keep me too"}`)
	azureID := str(t, decodeJSON(t, azureResp), "id")

	tests := []struct {
		name, path string
		wantStatus int
		wantID     string
	}{
		{"v1", "/openai/v1/responses/" + id, 200, id},
		{"azure path", "/openai/responses/" + azureID + "?api-version=2025-04-01-preview", 200, azureID},
		{"azure path without api-version", "/openai/responses/" + id, 400, ""},
		{"unknown", "/openai/v1/responses/resp_nope", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := srv.Client().Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			m := decodeJSON(t, resp)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d: %v", resp.StatusCode, tt.wantStatus, m)
			}
			if tt.wantID != "" {
				if got := str(t, m, "id"); got != tt.wantID {
					t.Errorf("id: got %q, want %q", got, tt.wantID)
				}
				if got := str(t, m, "status"); got != "completed" {
					t.Errorf("status: got %q, want completed", got)
				}
			}
		})
	}
	if resp := post(t, srv, "/openai/v1/responses/"+id, `{}`); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST to a response id: got %d, want 405", resp.StatusCode)
	}
}

func TestResponseStoreBound(t *testing.T) {
	st := newResponseStore(2)
	for _, id := range []string{"a", "b", "c"} {
		st.put(id, storedResponse{tokens: 1})
	}
	for id, want := range map[string]bool{"a": false, "b": true, "c": true} {
		if _, ok := st.get(id); ok != want {
			t.Errorf("get(%q): got %v, want %v", id, ok, want)
		}
	}
	if got := len(st.m); got != 2 {
		t.Errorf("stored: got %d, want 2", got)
	}
}

// TestResponseResources covers DELETE /responses/{id}, POST …/cancel and
// GET …/input_items on stored responses.
func TestResponseResources(t *testing.T) {
	_, srv, _ := newTestServer(t, testConfig())
	_, created := createResp(t, srv, `{"model":"chat","input":[{"role":"user","content":"first"},{"role":"user","content":[{"type":"input_text","text":"second"}]},{"role":"assistant","content":"third"}]}`)
	id := str(t, created, "id")
	do := func(method, path string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, decodeJSON(t, resp)
	}
	texts := func(m map[string]any) []string {
		var out []string
		for _, it := range m["data"].([]any) {
			c := it.(map[string]any)["content"].([]any)[0].(map[string]any)
			out = append(out, c["text"].(string))
		}
		return out
	}
	code, m := do(http.MethodGet, "/openai/v1/responses/"+id+"/input_items")
	if code != 200 || strings.Join(texts(m), ",") != "third,second,first" || m["has_more"] != false {
		t.Fatalf("input_items: %d %v", code, m)
	}
	code, m = do(http.MethodGet, "/openai/v1/responses/"+id+"/input_items?order=asc&limit=1")
	if code != 200 || strings.Join(texts(m), ",") != "first" || m["has_more"] != true {
		t.Fatalf("input_items asc limit 1: %d %v", code, m)
	}
	code, m = do(http.MethodGet, "/openai/v1/responses/"+id+"/input_items?order=asc&after="+m["last_id"].(string))
	if code != 200 || strings.Join(texts(m), ",") != "second,third" {
		t.Fatalf("input_items after: %d %v", code, m)
	}
	if code, _ := do(http.MethodGet, "/openai/v1/responses/"+id+"/input_items?limit=0"); code != 400 {
		t.Errorf("limit=0: %d, want 400", code)
	}
	if code, m := do(http.MethodPost, "/openai/v1/responses/"+id+"/cancel"); code != 400 {
		t.Errorf("cancel of a finished response: %d %v, want 400", code, m)
	}
	if code, m := do(http.MethodDelete, "/openai/v1/responses/"+id); code != 200 || m["deleted"] != true || m["id"] != id {
		t.Errorf("delete: %d %v", code, m)
	}
	for _, p := range []string{"", "/input_items"} {
		if code, _ := do(http.MethodGet, "/openai/v1/responses/"+id+p); code != 404 {
			t.Errorf("GET %q after delete: %d, want 404", p, code)
		}
	}
	if code, _ := do(http.MethodDelete, "/openai/v1/responses/"+id); code != 404 {
		t.Errorf("second delete: %d, want 404", code)
	}
	if code, _ := do(http.MethodGet, "/openai/v1/responses/"+id+"/bogus"); code != 404 {
		t.Errorf("unknown sub-path: %d, want 404", code)
	}
}
