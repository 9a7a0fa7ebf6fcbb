// Command e2eserver is a test-only stand-in for `mcpgate serve` used by the end-to-end OAuth
// tests in e2e/ until the real command wires everything: it serves the authorization server of
// package oauth with the real Redis store, client registry, grants manager and upstream OIDC
// client (or the development login), plus GET /whoami, which verifies a bearer token the way
// the MCP proxy does. Never deploy it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/oauth"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/mcpgate/mcpgate/gateway/internal/upstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2eserver:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		listen       = flag.String("listen", "127.0.0.1:8000", "listen address")
		publicURL    = flag.String("public-url", "http://127.0.0.1:8000", "public URL")
		redisURL     = flag.String("redis-url", "", "Redis URL (empty: in-memory store)")
		issuer       = flag.String("issuer", "", "upstream OIDC issuer (empty: development login)")
		clientID     = flag.String("client-id", "", "upstream client id")
		clientSecret = flag.String("client-secret", "", "upstream client secret")
		clientsDir   = flag.String("clients-dir", "", "client registrations directory")
		preapproved  = flag.String("preapproved", "", "comma-separated pre-approved client ids")
		limit        = flag.Int("limit", 1000, "per-IP requests per minute on register/authorize/token")
		loopbackCIMD = flag.Bool("allow-loopback-cimd", false, "allow metadata documents on loopback (test only)")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	var (
		st      store.Store
		limiter store.Limiter
	)
	if *redisURL != "" {
		r, err := store.NewRedis(ctx, store.RedisOptions{URL: *redisURL, Logger: log})
		if err != nil {
			return err
		}
		defer r.Close()
		st, limiter = r, store.NewRedisLimiter(r)
	} else {
		st, limiter = store.NewMemory(), store.NewMemoryLimiter(10000)
	}
	key, err := session.NewKey(session.StateActive, time.Now())
	if err != nil {
		return err
	}
	ring, err := session.NewRing(key)
	if err != nil {
		return err
	}
	keeper := session.NewStaticKeeper(ring)
	backend, err := clients.NewDirBackend(*clientsDir)
	if err != nil {
		return err
	}
	registry, err := clients.NewRegistry(ctx, clients.Options{Backend: backend, Logger: log, AllowLoopbackMetadata: *loopbackCIMD})
	if err != nil {
		return err
	}
	gm := grants.New(st, keeper, grants.Options{Logger: log})
	go gm.Run(ctx)

	mux := http.NewServeMux()
	var up oauth.Provider
	if *issuer != "" {
		o, err := upstream.New(ctx, upstream.Config{Issuer: *issuer, ClientID: *clientID, ClientSecret: *clientSecret, RedirectURL: *publicURL + "/oauth-callback"})
		if err != nil {
			return err
		}
		up = o
	} else {
		d, err := upstream.NewDevLogin(*publicURL, *listen)
		if err != nil {
			return err
		}
		mux.Handle(upstream.DevLoginPath, d.Handler())
		up = d
	}
	reg := prometheus.NewRegistry()
	var pre []string
	if *preapproved != "" {
		pre = strings.Split(*preapproved, ",")
	}
	srv, err := oauth.New(oauth.Config{
		PublicURL:          *publicURL,
		Clients:            registry,
		Grants:             gm,
		Keys:               keeper,
		Store:              st,
		Limiter:            limiter,
		Limits:             oauth.Limits{Register: store.PerMinute(*limit), Authorize: store.PerMinute(*limit), Token: store.PerMinute(*limit)},
		Upstream:           up,
		PreapprovedClients: pre,
		Logger:             log,
		Metrics:            reg,
	})
	if err != nil {
		return err
	}
	srv.Register(mux)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		at, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		resource := *publicURL + "/mcp"
		if q := r.URL.Query().Get("resource"); q != "" {
			resource = q
		}
		g, err := gm.Verify(r.Context(), at, resource)
		if !ok || err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", resource_metadata="`+*publicURL+`/.well-known/oauth-protected-resource/mcp"`)
			http.Error(w, "invalid token", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"user": g.User, "client_id": g.ClientID, "resource": g.Resource, "scope": g.Scope})
	})
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	log.Info("e2eserver listening", "addr", l.Addr().String(), "public_url", *publicURL)
	if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
