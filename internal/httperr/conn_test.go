package httperr

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestRewriteCanned: net/http's own plain-text answers become the OpenAI
// shape with the same status; handler responses pass untouched.
func TestRewriteCanned(t *testing.T) {
	const hdrs = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	tests := []struct {
		in     string
		status int
		code   string
	}{
		{"HTTP/1.1 431 Request Header Fields Too Large" + hdrs + "431 Request Header Fields Too Large", 431, "headers_too_large"},
		{"HTTP/1.1 501 Not Implemented" + hdrs + "Unsupported transfer encoding", 501, "unsupported_transfer_encoding"},
		{"HTTP/1.1 400 Bad Request: missing required Host header" + hdrs + "400 Bad Request: missing required Host header", 400, "invalid_request_error"},
		{"HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version" + hdrs + "505 …", 505, "http_version_not_supported"},
	}
	for _, tt := range tests {
		out, ok := rewriteCanned([]byte(tt.in))
		if !ok {
			t.Fatalf("%q not rewritten", tt.in)
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Error struct{ Code, Message, Type string }
		}
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || resp.StatusCode != tt.status || b.Error.Code != tt.code ||
			b.Error.Message == "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%q → %d %+v (%v)", tt.in, resp.StatusCode, b, err)
		}
	}
	for _, keep := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: x\r\nConnection: close\r\n\r\nhi",
		"data: {}\n\n",
		"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{}",
	} {
		if _, ok := rewriteCanned([]byte(keep)); ok {
			t.Errorf("%q rewritten", keep)
		}
	}
}
