package tables

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/rules"
)

// EDM type names used in "<prop>@odata.type" annotations.
const (
	edmBinary   = "Edm.Binary"
	edmBoolean  = "Edm.Boolean"
	edmDateTime = "Edm.DateTime"
	edmDouble   = "Edm.Double"
	edmGUID     = "Edm.Guid"
	edmInt32    = "Edm.Int32"
	edmInt64    = "Edm.Int64"
	edmString   = "Edm.String"
)

const annotation = "@odata.type"

// encodeEntity checks e against rules.Entity and returns its JSON body with
// explicit EDM annotations for int64, float64, time.Time and []byte. Keys are
// written as they are: aztables' EDMEntity.MarshalJSON would double single
// quotes in them, which are only escaped in URLs and filters.
func encodeEntity(e store.Entity) ([]byte, error) {
	if _, err := rules.Entity(e); err != nil {
		return nil, err
	}
	m := make(map[string]any, 2+2*len(e.Props))
	m["PartitionKey"], m["RowKey"] = e.PartitionKey, e.RowKey
	for name, v := range e.Props {
		var edm string
		switch v := v.(type) {
		case string, bool:
			m[name] = v
		case int64:
			m[name], edm = aztables.EDMInt64(v), edmInt64
		case float64:
			// Without the annotation a whole number such as 3.0 (sent as
			// "3") would be stored as Edm.Int32.
			m[name], edm = v, edmDouble
		case time.Time:
			m[name], edm = aztables.EDMDateTime(rules.Time(v)), edmDateTime
		case []byte:
			m[name], edm = aztables.EDMBinary(v), edmBinary
		}
		if edm != "" {
			m[name+annotation] = edm
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode entity: %w", err)
	}
	return b, nil
}

// encodeKeys is the body of a batch delete, which only needs the keys.
func encodeKeys(pk, rk string) ([]byte, error) {
	b, err := json.Marshal(map[string]string{"PartitionKey": pk, "RowKey": rk})
	if err != nil {
		return nil, fmt.Errorf("encode keys: %w", err)
	}
	return b, nil
}

// decodeEntity reads an entity as the SDK returns it (JSON with minimal
// metadata). Types follow the annotations; a number without one is a
// float64, because Azure and Azurite leave Edm.Double unannotated (and send
// 3.0 as 3) while this package always annotates Edm.Int64. An Edm.Int32
// written by another client reads as int64.
func decodeEntity(raw []byte) (store.Entity, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return store.Entity{}, fmt.Errorf("decode entity: %w", err)
	}
	var e store.Entity
	e.Props = make(map[string]any, len(m))
	for name, v := range m {
		switch {
		case name == "PartitionKey":
			e.PartitionKey, _ = v.(string)
		case name == "RowKey":
			e.RowKey, _ = v.(string)
		case name == "Timestamp":
			s, _ := v.(string)
			ts, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return store.Entity{}, fmt.Errorf("decode Timestamp %q: %w", s, err)
			}
			e.Timestamp = ts.UTC()
		case name == "odata.etag":
			e.ETag, _ = v.(string)
		case strings.HasPrefix(name, "odata.") || strings.HasSuffix(name, annotation):
			// metadata
		default:
			edm, _ := m[name+annotation].(string)
			val, err := decodeValue(v, edm)
			if err != nil {
				return store.Entity{}, fmt.Errorf("decode property %s: %w", name, err)
			}
			e.Props[name] = val
		}
	}
	return e, nil
}

func decodeValue(v any, edm string) (any, error) {
	switch edm {
	case "":
		switch v := v.(type) {
		case string, bool:
			return v, nil
		case json.Number:
			return v.Float64()
		}
	case edmString, edmGUID:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case edmBoolean:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case edmInt64, edmInt32:
		switch v := v.(type) {
		case string:
			return strconv.ParseInt(v, 10, 64)
		case json.Number:
			return v.Int64()
		}
	case edmDouble:
		switch v := v.(type) {
		case json.Number:
			return v.Float64()
		case string: // "NaN", "Infinity", "-Infinity" from other clients
			return strconv.ParseFloat(v, 64)
		}
	case edmDateTime:
		if s, ok := v.(string); ok {
			ts, err := time.Parse(time.RFC3339Nano, s)
			return ts.UTC(), err
		}
	case edmBinary:
		if s, ok := v.(string); ok {
			return base64.StdEncoding.DecodeString(s)
		}
	default:
		return nil, fmt.Errorf("unsupported type %s", edm)
	}
	return nil, fmt.Errorf("value %T(%v) does not match type %q", v, v, edm)
}
