package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// apiError is an error answered in the Azure / OpenAI shape
// {"error":{"code","message","type","param"}}. Azure's platform errors
// (401, 404, 429) carry only code and message, so type and param are
// omitted when empty.
type apiError struct {
	status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Type    string `json:"type,omitempty"`
	Param   string `json:"param,omitempty"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.Code, e.Message) }

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, struct {
		Error *apiError `json:"error"`
	}{e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"InternalServerError","message":"encoding failed"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func errNotFound() *apiError {
	return &apiError{status: http.StatusNotFound, Code: "404", Message: "Resource not found"}
}

func errMethod() *apiError {
	return &apiError{status: http.StatusMethodNotAllowed, Code: "405", Message: "Method not allowed"}
}

func errNoAPIVersion() *apiError {
	return &apiError{status: http.StatusBadRequest, Code: "MissingApiVersionParameter", Type: "invalid_request_error", Param: "api-version",
		Message: "The api-version query parameter (?api-version=) is required for all requests."}
}

func errInvalidJSON() *apiError {
	return &apiError{status: http.StatusBadRequest, Code: "invalid_json", Type: "invalid_request_error",
		Message: "We could not parse the JSON body of your request. The API expects a JSON payload, but what was sent was not valid JSON."}
}

func errMissing(param string) *apiError {
	return &apiError{status: http.StatusBadRequest, Code: "missing_required_parameter", Type: "invalid_request_error", Param: param,
		Message: fmt.Sprintf("Missing required parameter: '%s'.", param)}
}

func errInvalid(param, msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, Code: "invalid_value", Type: "invalid_request_error", Param: param, Message: msg}
}

func errUnsupported(param, msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, Code: "unsupported_parameter", Type: "invalid_request_error", Param: param, Message: msg}
}

// errRateLimited is Azure's 429 body; the code is the string "429".
func errRateLimited(wait time.Duration) *apiError {
	return &apiError{status: http.StatusTooManyRequests, Code: "429",
		Message: fmt.Sprintf("Rate limit is exceeded. Try again in %d seconds.", retryAfterSeconds(wait))}
}
