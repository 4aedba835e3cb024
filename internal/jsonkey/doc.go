// Package jsonkey finds duplicate object keys in JSON text.
//
// Parsers disagree on `{"a":1,"a":2}`: gjson and most JSON path readers
// take the first value, encoding/json and Python take the last. A gateway
// that checks one value while the backend acts on the other can be
// bypassed (issue #16), so the gateway refuses such bodies before reading
// any field. It depends only on the standard library.
package jsonkey
