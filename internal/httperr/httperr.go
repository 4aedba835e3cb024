package httperr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Error is an error with a client-safe message and an HTTP status.
type Error struct {
	Status int
	// Code is the OpenAI/Azure error code, e.g. "invalid_api_key".
	Code string
	// Type is the OpenAI error type, e.g. "invalid_request_error".
	Type string
	// Msg is shown to the client.
	Msg string
	// Param names the offending request field, if any.
	Param string
	// RetryAfter, when positive, is sent as retry-after and retry-after-ms.
	RetryAfter time.Duration
	// Inner, when set, is sent as error.innererror (Azure OpenAI's content
	// filter refusal carries its categories there).
	Inner any
	// Err is the cause, for logs only.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Code, e.Msg, e.Err)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// New builds an Error; typ is derived from the status when empty.
func New(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Msg: msg, Type: typeFor(status)}
}

// Wrap is New with a cause kept for logs.
func Wrap(err error, status int, code, msg string) *Error {
	e := New(status, code, msg)
	e.Err = err
	return e
}

// Common constructors.
func BadRequest(code, msg string) *Error { return New(http.StatusBadRequest, code, msg) }
func Unauthorized(msg string) *Error     { return New(http.StatusUnauthorized, "invalid_api_key", msg) }
func Forbidden(code, msg string) *Error  { return New(http.StatusForbidden, code, msg) }
func NotFound(code, msg string) *Error   { return New(http.StatusNotFound, code, msg) }

// StatusClientClosedRequest is the de-facto status for a client that went away.
const StatusClientClosedRequest = 499

func typeFor(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request_error"
	}
}

// From returns err as an *Error, mapping unknown errors to a 500 whose
// message reveals nothing.
func From(err error) *Error {
	var he *Error
	if errors.As(err, &he) {
		if he.Type == "" {
			he.Type = typeFor(he.Status)
		}
		return he
	}
	return Wrap(err, http.StatusInternalServerError, "internal_error", "the gateway failed to handle the request")
}

type body struct {
	Error bodyErr `json:"error"`
}

type bodyErr struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
	Inner   any     `json:"innererror,omitempty"`
}

// Write sends e as the response. It must be called before any header was written.
func Write(w http.ResponseWriter, err error) {
	e := From(err)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		secs := int64((e.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
		h.Set("Retry-After-Ms", strconv.FormatInt(e.RetryAfter.Milliseconds(), 10))
	}
	b := body{Error: bodyErr{Message: e.Msg, Type: e.Type, Code: e.Code, Inner: e.Inner}}
	if e.Param != "" {
		p := e.Param
		b.Error.Param = &p
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(b)
}
