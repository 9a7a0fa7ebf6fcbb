package mcpproxy_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/gateway/internal/funckey"
	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/mcpproxy"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

const benchBody = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_mcp","arguments":{}}}`

func benchBackend(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"Hello!"}]}}`)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func drive(b *testing.B, url string, hdr map[string]string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(benchBody))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// BenchmarkPlainHop is the baseline: a plain httputil.ReverseProxy adding the key.
func BenchmarkPlainHop(b *testing.B) {
	be := benchBackend(b)
	u, _ := url.Parse(be.URL)
	rp := &httputil.ReverseProxy{Transport: mcpproxy.NewTransport(time.Minute), Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.Header.Set("X-Functions-Key", "k")
	}}
	front := httptest.NewServer(rp)
	defer front.Close()
	drive(b, front.URL+"/mcp", nil)
}

// BenchmarkChain is the full chain in process: real grants (in-memory store, cached), the
// static key, access log to io.Discard through the JSON handler, metrics.
func BenchmarkChain(b *testing.B) {
	be := benchBackend(b)
	st := store.NewMemory()
	k, _ := session.NewKey(session.StateActive, time.Now())
	ring, _ := session.NewRing(k)
	gm := grants.New(st, session.NewStaticKeeper(ring), grants.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go gm.Run(ctx)
	for !gm.CacheActive() {
		time.Sleep(time.Millisecond)
	}
	front := httptest.NewUnstartedServer(nil)
	public := "http://" + front.Listener.Addr().String()
	p, err := mcpproxy.New(mcpproxy.Config{PublicURL: public, BackendURL: be.URL, Verifier: gm,
		Keys: funckey.New(funckey.Static("k"), funckey.Options{}), RateLimit: 1e9, RateBurst: 1e9,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	p.Register(mux)
	front.Config.Handler = mux
	front.Start()
	defer front.Close()
	ts, err := gm.Issue(ctx, grants.Grant{ClientID: "c", Resource: public + "/mcp", User: identity.User{Subject: "u", ObjectID: "u"}}, identity.Tokens{})
	if err != nil {
		b.Fatal(err)
	}
	drive(b, front.URL+"/mcp", map[string]string{"Authorization": "Bearer " + ts.AccessToken})
}
