package tables

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/foundry-gateway/gateway/internal/store"
)

// sentinel maps a service status and error code to a store sentinel, or nil.
func sentinel(status int, code string) error {
	switch {
	case status == http.StatusNotFound:
		return store.ErrNotFound
	case status == http.StatusConflict && code == string(aztables.EntityAlreadyExists):
		return store.ErrExists
	case status == http.StatusPreconditionFailed:
		return store.ErrPrecondition
	case status == http.StatusBadRequest, status == http.StatusRequestEntityTooLarge:
		return store.ErrInvalid
	}
	return nil
}

// wrap adds context to err and, for service errors, the matching store
// sentinel. Keys are cut to 64 characters to keep logs readable.
func wrap(op, tbl, pk, rk string, err error) error {
	where := tbl
	if pk != "" || rk != "" {
		where = fmt.Sprintf("%s(%.64q, %.64q)", tbl, pk, rk)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		if s := sentinel(re.StatusCode, re.ErrorCode); s != nil {
			return fmt.Errorf("tables: %s %s: %w (HTTP %d %s)", op, where, s, re.StatusCode, re.ErrorCode)
		}
		return fmt.Errorf("tables: %s %s: HTTP %d %s: %w", op, where, re.StatusCode, re.ErrorCode, err)
	}
	return fmt.Errorf("tables: %s %s: %w", op, where, err)
}

// wrapBatch maps a failed SubmitTransaction. A failed entity group
// transaction comes back as HTTP 202 whose multipart body holds the failing
// sub-response ("HTTP/1.1 409 Conflict" and an odata.error whose message
// starts with the index of the failing op); the SDK turns that into a
// ResponseError with status 202 and no code, so the body is parsed here.
func wrapBatch(tbl, pk string, ops []store.Op, err error) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusAccepted {
		return wrap("batch", tbl, pk, "", err)
	}
	body, _ := runtime.Payload(re.RawResponse) // nil body: parse the message instead
	if body == nil {
		body = []byte(err.Error())
	}
	f := parseBatchFailure(body)
	where := fmt.Sprintf("%s(%.64q)", tbl, pk)
	if f.index >= 0 && f.index < len(ops) {
		where += fmt.Sprintf(" op %d (RowKey %.64q)", f.index, ops[f.index].Entity.RowKey)
	}
	if s := sentinel(f.status, f.code); s != nil {
		return fmt.Errorf("tables: batch %s: %w (HTTP %d %s)", where, s, f.status, f.code)
	}
	return fmt.Errorf("tables: batch %s: failed with HTTP %d %s: %w", where, f.status, f.code, err)
}

type batchFailure struct {
	status int    // status of the failing sub-response, 0 if not found
	code   string // its odata.error code
	index  int    // index of the failing op, -1 if unknown
}

var (
	subStatus = regexp.MustCompile(`(?m)^HTTP/1\.1 (\d{3}) `)
	opIndex   = regexp.MustCompile(`^(\d+):`)
)

// parseBatchFailure reads the first failing sub-response of a batch
// response body.
func parseBatchFailure(body []byte) batchFailure {
	f := batchFailure{index: -1}
	m := subStatus.FindSubmatchIndex(body)
	if m == nil {
		return f
	}
	f.status, _ = strconv.Atoi(string(body[m[2]:m[3]]))
	rest := body[m[1]:]
	i := bytes.Index(rest, []byte(`{"odata.error"`))
	if i < 0 {
		return f
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message struct {
				Value string `json:"value"`
			} `json:"message"`
		} `json:"odata.error"`
	}
	dec := json.NewDecoder(bytes.NewReader(rest[i:]))
	if dec.Decode(&e) != nil {
		return f
	}
	f.code = e.Error.Code
	if m := opIndex.FindStringSubmatch(e.Error.Message.Value); m != nil {
		f.index, _ = strconv.Atoi(m[1])
	}
	return f
}
