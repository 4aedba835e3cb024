package sim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// contentSafety emulates Azure AI Content Safety's text APIs
// (text:analyze and text:shieldPrompt, api-version 2024-09-01) with
// deterministic verdicts for marked text, so the gateway's real client is
// tested end to end:
//
//   - [cs:hate=N], [cs:selfharm=N], [cs:sexual=N], [cs:violence=N] in the
//     analysed text set that category's severity to N (0-7; the highest
//     marker wins); every other category is 0. With outputType
//     FourSeverityLevels (the default) N is rounded down to 0, 2, 4 or 6.
//   - [cs:attack] in userPrompt is a user prompt attack; in a document, a
//     document attack (that document's attackDetected).
//
// POST /sim/contentsafety-fault?fault=down|slow| switches faults: down
// answers 503, slow answers after 10 s (or when the client gives up),
// empty is healthy. GET /sim/contentsafety reports the calls served.
type contentSafety struct {
	fault atomic.Pointer[string]
	calls atomic.Int64
}

var csMarker = regexp.MustCompile(`\[cs:(hate|selfharm|sexual|violence)=([0-7])\]`)

// csSlow is how long the slow fault holds an answer.
const csSlow = 10 * time.Second

// csAPIVersions are the versions the emulation answers: the GA version
// with both text operations.
var csAPIVersions = map[string]bool{"2024-09-01": true}

// serve answers the Content Safety routes and its control routes; it
// reports false for any other path.
func (cs *contentSafety) serve(w http.ResponseWriter, r *http.Request, authorized bool) bool {
	path := r.URL.Path
	switch {
	case path == "/sim/contentsafety-fault" && r.Method == http.MethodPost:
		switch f := r.URL.Query().Get("fault"); f {
		case "", "down", "slow":
			cs.fault.Store(&f)
			w.WriteHeader(http.StatusNoContent)
		default:
			writeError(w, &apiError{status: http.StatusBadRequest, Code: "BadRequest", Message: "fault must be down, slow or empty"})
		}
		return true
	case path == "/sim/contentsafety" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]int64{"calls": cs.calls.Load()})
		return true
	case path != "/contentsafety/text:analyze" && path != "/contentsafety/text:shieldPrompt":
		return false
	}
	if r.Method != http.MethodPost {
		writeError(w, &apiError{status: http.StatusMethodNotAllowed, Code: "MethodNotAllowed", Message: "Use POST."})
		return true
	}
	if !authorized {
		writeError(w, &apiError{status: http.StatusUnauthorized, Code: "401",
			Message: "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."})
		return true
	}
	v := r.URL.Query().Get("api-version")
	if v == "" {
		writeError(w, &apiError{status: http.StatusBadRequest, Code: "MissingApiVersionParameter", Message: "The api-version query parameter (?api-version=) is required for all requests."})
		return true
	}
	if !csAPIVersions[v] {
		writeError(w, &apiError{status: http.StatusNotFound, Code: "404", Message: "Resource not found"})
		return true
	}
	// The body is read first: only then does net/http notice a client
	// that gives up (the slow fault waits for that).
	raw, rerr := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	switch f := cs.fault.Load(); {
	case f != nil && *f == "down":
		writeError(w, &apiError{status: http.StatusServiceUnavailable, Code: "ServiceUnavailable", Message: "The service is temporarily unavailable."})
		return true
	case f != nil && *f == "slow":
		select {
		case <-time.After(csSlow):
		case <-r.Context().Done():
			return true
		}
	}
	bad := func(msg string) {
		writeError(w, &apiError{status: http.StatusBadRequest, Code: "InvalidRequestBody", Message: msg})
	}
	if strings.HasSuffix(path, "text:analyze") {
		var req struct {
			Text       *string  `json:"text"`
			Categories []string `json:"categories"`
			OutputType string   `json:"outputType"`
		}
		if err := errors.Join(rerr, json.Unmarshal(raw, &req)); err != nil {
			bad("The request body is not valid JSON: " + err.Error())
			return true
		}
		if req.Text == nil || *req.Text == "" {
			bad("The text field is required.")
			return true
		}
		if utf8.RuneCountInString(*req.Text) > 10000 {
			bad("The text is longer than 10000 characters.")
			return true
		}
		eight := false
		switch req.OutputType {
		case "", "FourSeverityLevels":
		case "EightSeverityLevels":
			eight = true
		default:
			bad("outputType must be FourSeverityLevels or EightSeverityLevels.")
			return true
		}
		sev := map[string]int{}
		for _, m := range csMarker.FindAllStringSubmatch(*req.Text, -1) {
			n, _ := strconv.Atoi(m[2])
			if !eight {
				n = n / 2 * 2
			}
			sev[m[1]] = max(sev[m[1]], n)
		}
		cats := req.Categories
		if len(cats) == 0 {
			cats = []string{"Hate", "SelfHarm", "Sexual", "Violence"}
		}
		type result struct {
			Category string `json:"category"`
			Severity int    `json:"severity"`
		}
		out := struct {
			BlocklistsMatch    []any    `json:"blocklistsMatch"`
			CategoriesAnalysis []result `json:"categoriesAnalysis"`
		}{BlocklistsMatch: []any{}}
		for _, c := range cats {
			switch c {
			case "Hate", "SelfHarm", "Sexual", "Violence":
			default:
				bad("Unknown category " + c + ".")
				return true
			}
			out.CategoriesAnalysis = append(out.CategoriesAnalysis, result{c, sev[strings.ToLower(c)]})
		}
		cs.calls.Add(1)
		writeJSON(w, http.StatusOK, out)
		return true
	}
	var req struct {
		UserPrompt *string  `json:"userPrompt"`
		Documents  []string `json:"documents"`
	}
	if err := errors.Join(rerr, json.Unmarshal(raw, &req)); err != nil {
		bad("The request body is not valid JSON: " + err.Error())
		return true
	}
	if req.UserPrompt == nil && len(req.Documents) == 0 {
		bad("Set userPrompt, documents or both.")
		return true
	}
	type analysis struct {
		AttackDetected bool `json:"attackDetected"`
	}
	out := struct {
		UserPromptAnalysis *analysis  `json:"userPromptAnalysis,omitempty"`
		DocumentsAnalysis  []analysis `json:"documentsAnalysis"`
	}{DocumentsAnalysis: []analysis{}}
	if req.UserPrompt != nil {
		out.UserPromptAnalysis = &analysis{strings.Contains(*req.UserPrompt, "[cs:attack]")}
	}
	for _, d := range req.Documents {
		out.DocumentsAnalysis = append(out.DocumentsAnalysis, analysis{strings.Contains(d, "[cs:attack]")})
	}
	cs.calls.Add(1)
	writeJSON(w, http.StatusOK, out)
	return true
}

// authorizedContentSafety checks Ocp-Apim-Subscription-Key or a bearer
// token against Config.APIKey (any request when it is empty).
func (s *Server) authorizedContentSafety(r *http.Request) bool {
	want := string(s.cfg.APIKey)
	if want == "" || r.Header.Get("Ocp-Apim-Subscription-Key") == want {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && tok == want
}
