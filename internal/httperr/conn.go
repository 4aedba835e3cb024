package httperr

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
)

// net/http answers some malformed requests itself, before any handler runs
// (431 for a header block above Server.MaxHeaderBytes, 501 for an
// unsupported Transfer-Encoding, 400 for bad header syntax, 505), with a
// plain-text body written straight to the connection in one write:
//
//	HTTP/1.1 <status>[: detail]\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n<text>
//
// (net/http server.go, conn.serve). A handler's response always carries a
// Date header, so this exact header block identifies the canned answers.
const cannedHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// Listener wraps ln so that net/http's own plain-text error answers reach
// clients in the OpenAI error shape, with the same status.
func Listener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return conn{c}, nil
}

type conn struct{ net.Conn }

// CloseWrite passes through, so net/http can half-close before closing
// (it checks for this method to avoid resetting connections whose client
// is still sending).
func (c conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// Write rewrites a canned net/http error answer; everything else passes.
func (c conn) Write(b []byte) (int, error) {
	if out, ok := rewriteCanned(b); ok {
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// rewriteCanned returns the OpenAI-shaped form of a canned answer.
func rewriteCanned(b []byte) ([]byte, bool) {
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 ")) {
		return nil, false
	}
	i := bytes.Index(b, []byte(cannedHeaders))
	if i < 0 || bytes.IndexByte(b[:i], '\n') >= 0 {
		return nil, false // not a status line followed directly by the canned headers
	}
	line := string(b[len("HTTP/1.1 "):i])
	if len(line) < 3 {
		return nil, false
	}
	status, err := strconv.Atoi(line[:3])
	if err != nil || status < 400 || status > 599 {
		return nil, false
	}
	e := cannedError(status, string(b[i+len(cannedHeaders):]))
	body, _ := json.Marshal(struct {
		Error bodyErr `json:"error"`
	}{bodyErr{Message: e.Msg, Type: e.Type, Code: e.Code}})
	var out bytes.Buffer
	out.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	out.WriteString("Content-Type: application/json\r\nConnection: close\r\n")
	out.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	out.Write(body)
	return out.Bytes(), true
}

// cannedError maps a canned status to the gateway's code and message.
func cannedError(status int, text string) *Error {
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		return New(status, "headers_too_large", "The request's headers are larger than the gateway accepts (maxHeaderBytes).")
	case http.StatusNotImplemented:
		return New(status, "unsupported_transfer_encoding", "The request's Transfer-Encoding is not supported; send the body with Content-Length or plain chunked encoding.")
	case http.StatusHTTPVersionNotSupported:
		return New(status, "http_version_not_supported", "The request's HTTP version is not supported.")
	case http.StatusBadRequest:
		msg := "The request is malformed."
		if len(text) > len("400 Bad Request: ") && len(text) < 200 {
			msg = "The request is malformed: " + text[len("400 Bad Request: "):] + "."
		}
		return New(status, "invalid_request_error", msg)
	default:
		return New(status, "error", http.StatusText(status))
	}
}
