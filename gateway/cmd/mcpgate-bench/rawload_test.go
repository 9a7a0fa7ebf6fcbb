package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestRawClient(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch {
		case r.URL.Path == "/chunked":
			w.Write([]byte("x"))
			w.(http.Flusher).Flush() // no Content-Length
			return
		case r.URL.Path == "/close":
			w.Header().Set("Connection", "close")
		}
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer t" ||
			r.Header.Get("Mcp-Protocol-Version") != "2025-11-25" || string(b) != `{"x":1}` {
			http.Error(w, "bad request "+r.Method+" "+string(b), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	h := requestHeaders(target{headers: map[string]string{"Authorization": "Bearer t"}})

	c, err := newRawClient(srv.URL+"/mcp", h, `{"x":1}`)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if st, err := c.do(t.Context()); err != nil || st != 200 {
			t.Fatalf("call %d: %d %v", i, st, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("50 calls used %d connections, want 1 (keep-alive)", n)
	}
	c.close()

	c, _ = newRawClient(srv.URL+"/close", h, `{"x":1}`)
	for range 3 {
		if st, err := c.do(t.Context()); err != nil || st != 200 {
			t.Fatalf("Connection: close: %d %v", st, err)
		}
	}
	c.close()

	c, _ = newRawClient(srv.URL+"/mcp", nil, `{"x":1}`) // no credentials
	if st, err := c.do(t.Context()); err != nil || st != http.StatusBadRequest {
		t.Fatalf("error status: %d %v", st, err)
	}
	c.close()

	c, _ = newRawClient(srv.URL+"/chunked", h, `{"x":1}`)
	if _, err := c.do(t.Context()); err == nil {
		t.Fatal("a response without Content-Length was accepted")
	}
	c.close()

	if _, err := newRawClient("https://example.com/mcp", h, ""); err == nil {
		t.Fatal("https URL accepted")
	}
}
