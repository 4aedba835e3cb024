package tables

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
)

func TestFilter(t *testing.T) {
	tests := []struct {
		q    store.Query
		want string
	}{
		{store.Query{AllPartitions: true}, ""},
		{store.Query{PartitionKey: "p"}, "PartitionKey eq 'p'"},
		{store.Query{PartitionKey: "o'brien", RowKeyFrom: "a'", RowKeyTo: "''"}, "PartitionKey eq 'o''brien' and RowKey ge 'a''' and RowKey lt ''''''"},
		{store.Query{AllPartitions: true, RowKeyTo: "z"}, "RowKey lt 'z'"},
	}
	for _, tt := range tests {
		if got := filter(tt.q); got != tt.want {
			t.Errorf("filter(%+v): got %q, want %q", tt.q, got, tt.want)
		}
	}
}

// decodeEntity must accept what other clients write, not only what
// encodeEntity produces.
func TestDecodeEntity(t *testing.T) {
	raw := `{"PartitionKey":"p","RowKey":"r","Timestamp":"2024-01-02T03:04:05.1234567Z",
		"odata.etag":"W/\"x\"","odata.metadata":"m",
		"whole":3,"frac":2.5,
		"i32":7,"i32@odata.type":"Edm.Int32",
		"i64":"9007199254740993","i64@odata.type":"Edm.Int64",
		"nan":"NaN","nan@odata.type":"Edm.Double",
		"g":"3f2504e0-4f89-11d3-9a0c-0305e82c3301","g@odata.type":"Edm.Guid",
		"t":"2024-01-02T03:04:05.1234567Z","t@odata.type":"Edm.DateTime",
		"x":"AAH/","x@odata.type":"Edm.Binary",
		"s":"str","b":true}`
	e, err := decodeEntity([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2024, 1, 2, 3, 4, 5, 123456700, time.UTC)
	if e.PartitionKey != "p" || e.RowKey != "r" || e.ETag != `W/"x"` || !e.Timestamp.Equal(ts) {
		t.Errorf("system fields: got %q %q %q %v", e.PartitionKey, e.RowKey, e.ETag, e.Timestamp)
	}
	want := map[string]any{
		"whole": 3.0, "frac": 2.5, "i32": int64(7), "i64": int64(1)<<53 + 1,
		"g": "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "t": ts, "x": []byte{0, 1, 255}, "s": "str", "b": true,
	}
	for k, w := range want {
		g := e.Props[k]
		switch w := w.(type) {
		case []byte:
			if string(g.([]byte)) != string(w) {
				t.Errorf("%s: got %v, want %v", k, g, w)
			}
		case time.Time:
			if !g.(time.Time).Equal(w) {
				t.Errorf("%s: got %v, want %v", k, g, w)
			}
		default:
			if g != w {
				t.Errorf("%s: got %T(%v), want %T(%v)", k, g, g, w, w)
			}
		}
	}
	if f, ok := e.Props["nan"].(float64); !ok || !math.IsNaN(f) {
		t.Errorf("nan: got %v, want NaN", e.Props["nan"])
	}
	if len(e.Props) != len(want)+1 {
		t.Errorf("got %d props, want %d: %v", len(e.Props), len(want)+1, e.Props)
	}

	if _, err := decodeEntity([]byte(`{"v":"1","v@odata.type":"Edm.Decimal"}`)); err == nil {
		t.Error("unknown EDM type: got nil error")
	}
	if _, err := decodeEntity([]byte(`{"v":true,"v@odata.type":"Edm.Int64"}`)); err == nil {
		t.Error("mismatched EDM type: got nil error")
	}
}

func TestParseBatchFailure(t *testing.T) {
	// As Azurite 3.37.0 answers an insert of an existing row as op 1.
	body := "--batchresponse_f639\r\nContent-Type: multipart/mixed; boundary=changesetresponse_414a\r\n\r\n" +
		"--changesetresponse_414a\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
		"HTTP/1.1 409 Conflict\r\nContent-ID: 2\r\nDataServiceVersion: 3.0;\r\nContent-Type: application/json;odata=minimalmetadata;charset=utf-8\r\n\r\n" +
		`{"odata.error":{"code":"EntityAlreadyExists","message":{"lang":"en-US","value":"1:The specified entity already exists.\nRequestId:1e51\nTime:2026-11-24T04:50:37.618Z"}}}` +
		"\r\n--changesetresponse_414a--\r\n--batchresponse_f639--\r\n"
	f := parseBatchFailure([]byte(body))
	if f.status != 409 || f.code != "EntityAlreadyExists" || f.index != 1 {
		t.Errorf("got %+v, want status 409, code EntityAlreadyExists, index 1", f)
	}
	if f := parseBatchFailure([]byte("garbage")); f.status != 0 || f.index != -1 {
		t.Errorf("garbage: got %+v", f)
	}
}

func TestSentinel(t *testing.T) {
	tests := []struct {
		status int
		code   string
		want   error
	}{
		{404, "ResourceNotFound", store.ErrNotFound},
		{404, "TableNotFound", store.ErrNotFound},
		{409, "EntityAlreadyExists", store.ErrExists},
		{409, "TableBeingDeleted", nil},
		{412, "UpdateConditionNotSatisfied", store.ErrPrecondition},
		{400, "PropertyValueTooLarge", store.ErrInvalid},
		{413, "RequestBodyTooLarge", store.ErrInvalid},
		{503, "ServerBusy", nil},
	}
	for _, tt := range tests {
		if got := sentinel(tt.status, tt.code); !errors.Is(got, tt.want) || (tt.want == nil) != (got == nil) {
			t.Errorf("sentinel(%d, %s): got %v, want %v", tt.status, tt.code, got, tt.want)
		}
	}
}
