package upstream

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Decrypted bytes left in a TLS connection after an answer (which the
// socket check cannot see) keep it out of reuse; the check itself does not
// harm a clean connection.
func TestTLSBuffered(t *testing.T) {
	ts := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate
	defer ts.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		sc := tls.Server(raw, ts.TLS)
		defer sc.Close()
		buf := make([]byte, 16)
		for {
			n, err := sc.Read(buf)
			if err != nil {
				return
			}
			sc.Write(buf[:n]) // echo, one record per write
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sock := &tlsSocket{Conn: raw}
	cc := tls.Client(sock, &tls.Config{RootCAs: ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "example.com"})
	defer cc.Close()
	c := &conn{nc: cc, raw: raw, sock: sock}

	if _, err := cc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(cc, got); err != nil || string(got) != "ping" {
		t.Fatalf("%q %v", got, err)
	}
	if tlsBuffered(c) {
		t.Fatal("a clean connection reported as holding bytes")
	}
	// Still usable after the check.
	if _, err := cc.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(cc, one); err != nil || one[0] != 'a' {
		t.Fatalf("%q %v", one, err)
	}
	// "bc" is decrypted and waiting in the TLS layer.
	if !tlsBuffered(c) {
		t.Fatal("bytes left in the TLS layer not seen")
	}
	cc.Close()
	<-srvDone
}
