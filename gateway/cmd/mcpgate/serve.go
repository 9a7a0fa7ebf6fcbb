package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/mcpgate/mcpgate/gateway/internal/azureauth"
	"github.com/mcpgate/mcpgate/gateway/internal/clients"
	"github.com/mcpgate/mcpgate/gateway/internal/config"
	"github.com/mcpgate/mcpgate/gateway/internal/funckey"
	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/landing"
	"github.com/mcpgate/mcpgate/gateway/internal/mcpproxy"
	"github.com/mcpgate/mcpgate/gateway/internal/oauth"
	"github.com/mcpgate/mcpgate/gateway/internal/ops"
	idpolicy "github.com/mcpgate/mcpgate/gateway/internal/policy"
	"github.com/mcpgate/mcpgate/gateway/internal/secretsrc"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/ssebridge"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/mcpgate/mcpgate/gateway/internal/telemetry"
	"github.com/mcpgate/mcpgate/gateway/internal/upstream"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const serveSummary = `Run the gateway: the OAuth 2.1 authorization server for MCP clients and the MCP proxy in
front of the function app. With no settings it runs the local stack's gateway; in Azure every
setting comes from the environment (see README "Configuration").`

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg config.Serve
	fs := newFlagSet("serve [flags]", serveSummary, stderr)
	settings := cfg.Settings()
	config.Bind(fs, settings, os.Getenv)
	if err := config.CheckEnv(settings, os.Getenv); err != nil {
		return fmt.Errorf("bad environment: %w", err)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	logger, closeLog := telemetry.NewBufferedLogger(stderr, level, cfg.LogFlushInterval)
	defer func() { _ = closeLog() }() // after the gateway has shut down: its last lines too
	gw, err := newGateway(ctx, &cfg, logger)
	if err != nil {
		return err
	}
	defer gw.close()
	return gw.serve(ctx)
}

// gateway is one wired `mcpgate serve` process.
type gateway struct {
	cfg     *config.Serve
	logger  *slog.Logger
	store   store.Store
	keeper  *session.Keeper
	grants  *grants.Manager
	clients *clients.Registry
	keys    *funckey.Keys
	proxy   *mcpproxy.Proxy
	sse     *ssebridge.Bridge
	replica *ops.Registry
	otel    *telemetry.OTel
	handler http.Handler
	metrics http.Handler
	// registry holds every metric the gateway registered (docs/metrics.md is generated from it).
	registry *telemetry.Registry
	closers  []func()
}

func (g *gateway) close() {
	for i := len(g.closers) - 1; i >= 0; i-- {
		g.closers[i]()
	}
}

func newGateway(ctx context.Context, cfg *config.Serve, logger *slog.Logger) (gw *gateway, err error) {
	g := &gateway{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	replicaID := cfg.ReplicaID
	if replicaID == "" {
		replicaID = config.DefaultReplicaID(randomHex(3))
	}
	reg := telemetry.NewRegistry()
	g.registry = reg
	httpMetrics := telemetry.NewHTTPMetrics(reg)
	if g.otel, err = telemetry.SetupOTel(ctx, "mcpgate", version); err != nil {
		return nil, fmt.Errorf("OpenTelemetry: %w", err)
	}
	g.closers = append(g.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.otel.Shutdown(sctx)
	})

	creds := &lazyCredential{}

	// Store: Redis when configured, else memory (a single replica).
	var limiter store.Limiter
	if cfg.RedisURL != "" {
		// NoPing: the gateway starts alive but not ready while Redis is unreachable.
		ropts := store.RedisOptions{URL: cfg.RedisURL, Logger: logger, NoPing: true}
		if cfg.RedisEntra {
			if ropts.StreamingCredentialsProvider, err = redisEntraCredentials(); err != nil {
				return nil, err
			}
		}
		r, err := store.NewRedis(ctx, ropts)
		if err != nil {
			return nil, fmt.Errorf("connect to Redis (MCPGATE_REDIS_URL): %w", err)
		}
		g.store, limiter = r, store.NewRedisLimiter(r)
		redis.SetLogger(redisLogger{logger})
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := r.Ping(pctx); err != nil {
			logger.Error("Redis is unreachable: not ready until it answers", "error", err)
		}
		cancel()
	} else {
		g.store, limiter = store.NewMemory(), store.NewMemoryLimiter(100_000)
		logger.Warn("no MCPGATE_REDIS_URL: sessions live in memory and are lost on restart; run one replica only")
	}
	g.closers = append(g.closers, func() { _ = g.store.Close() })

	// Session-key ring.
	var ringSrc secretsrc.Source
	if cfg.SessionKeysSecret != "" {
		cred, err := creds.get()
		if err != nil {
			return nil, err
		}
		if ringSrc, err = secretsrc.NewKeyVault(cfg.KeyVaultURL, cfg.SessionKeysSecret, cred, nil); err != nil {
			return nil, fmt.Errorf("session-key ring: %w", err)
		}
	} else {
		created, err := secretsrc.EnsureLocalRing(cfg.SessionKeysFile)
		if err != nil {
			return nil, fmt.Errorf("session-key ring %s: %w", cfg.SessionKeysFile, err)
		}
		if created {
			logger.Info("created a local session-key ring", "path", cfg.SessionKeysFile)
		}
		ringSrc = secretsrc.NewFile(cfg.SessionKeysFile)
	}
	if cfg.SessionKeysSecret != "" {
		// In Azure the ring is created after provisioning: start alive, not ready, until it exists.
		g.keeper, err = session.NewPendingKeeper(ringSrc.Get, cfg.SessionKeysReloadInterval, logger)
	} else {
		g.keeper, err = session.NewKeeper(ctx, ringSrc.Get, cfg.SessionKeysReloadInterval, logger)
	}
	if err != nil {
		return nil, fmt.Errorf("load the session-key ring from %s: %w (create it with `mcpgate secrets generate`)", ringSrc.Describe(), err)
	}
	registerRingMetrics(reg, g.keeper)
	g.grants = grants.New(g.store, g.keeper, grants.Options{AccessTTL: cfg.AccessTokenTTL, RefreshTTL: cfg.RefreshTokenTTL, Logger: logger})

	// Function key.
	var keySrc funckey.Source
	switch {
	case cfg.FunctionKey != "":
		keySrc = funckey.Static(cfg.FunctionKey)
	case cfg.FunctionKeySecret != "":
		cred, err := creds.get()
		if err != nil {
			return nil, err
		}
		kv, err := secretsrc.NewKeyVault(cfg.KeyVaultURL, cfg.FunctionKeySecret, cred, nil)
		if err != nil {
			return nil, fmt.Errorf("function key: %w", err)
		}
		keySrc = funckey.KeyVault(kv)
	default:
		keySrc = funckey.File(cfg.FunctionKeyFile)
	}
	keyOpts := funckey.Options{Logger: logger, Registerer: reg}
	if cfg.FunctionKeySecret != "" {
		// A rotation waits until every replica uses the new key: poll Key Vault every minute
		// (a backend 401 also triggers an immediate refresh).
		keyOpts.PollInterval = time.Minute
	}
	g.keys = funckey.New(keySrc, keyOpts)
	if g.replica, err = ops.NewRegistry(g.store, replicaID, g.keys, ops.RegistryOptions{Logger: logger, Ring: g.keeper}); err != nil {
		return nil, err
	}

	// Clients.
	var backend clients.Backend
	if strings.HasPrefix(cfg.ClientsStore, "https://") || strings.HasPrefix(cfg.ClientsStore, "http://") {
		cred, err := creds.get()
		if err != nil {
			return nil, err
		}
		if backend, err = clients.OpenBackend(cfg.ClientsStore, cred); err != nil {
			return nil, err
		}
	} else if backend, err = clients.OpenBackend(cfg.ClientsStore, nil); err != nil {
		return nil, fmt.Errorf("client registrations %s: %w", cfg.ClientsStore, err)
	}
	var prereg []clients.Client
	if cfg.ClientsFile != "" {
		if prereg, err = clients.LoadPreregistered(cfg.ClientsFile); err != nil {
			return nil, err
		}
	}
	if g.clients, err = clients.NewRegistry(ctx, clients.Options{
		Backend: backend, Cache: clientCache{g.store}, Preregistered: prereg,
		AllowLoopbackMetadata: cfg.AllowLoopbackCIMD, Logger: logger,
	}); err != nil {
		return nil, fmt.Errorf("client registry: %w", err)
	}

	mux := http.NewServeMux()

	// Upstream identity provider.
	var idp oauth.Provider
	if cfg.DevLogin {
		dl, err := upstream.NewDevLogin(cfg.Origin(), cfg.Listen)
		if err != nil {
			return nil, err
		}
		mux.Handle("/dev-login", dl.Handler())
		idp = dl
		logger.Warn("DEVELOPMENT LOGIN ENABLED: anyone who reaches this gateway can sign in as anyone; loopback only, never in production")
	} else {
		ucfg := upstream.Config{
			Issuer: cfg.Issuer(), ClientID: cfg.UpstreamClientID, ClientSecret: cfg.UpstreamClientSecret,
			RedirectURL: cfg.Origin() + "/oauth-callback", Scopes: strings.Fields(cfg.UpstreamScopes),
		}
		if cfg.EntraTenantID != "" {
			if ucfg.Issuer, err = upstream.EntraIssuer("", cfg.EntraTenantID); err != nil {
				return nil, fmt.Errorf("MCPGATE_ENTRA_TENANT_ID: %w", err)
			}
		}
		if cfg.UpstreamFICClientID != "" {
			mi, err := azureauth.ManagedIdentity(cfg.UpstreamFICClientID)
			if err != nil {
				return nil, fmt.Errorf("federated credential (MCPGATE_UPSTREAM_FIC_CLIENT_ID): %w", err)
			}
			ucfg.ClientAssertion = azureauth.ClientAssertion(mi, azureauth.TokenExchangeScope)
		}
		if idp, err = upstream.New(ctx, ucfg); err != nil {
			return nil, fmt.Errorf("upstream identity provider %s: %w", ucfg.Issuer, err)
		}
		if upstream.IsEntraMultiTenant(ucfg.Issuer) && cfg.AllowedTenants == "" {
			logger.Warn("multi-tenant Entra endpoint without MCPGATE_ALLOWED_TENANTS: users of any Entra tenant that consents to the app can sign in")
		}
	}
	admission, err := idpolicy.New(idpolicy.Config{
		AllowedTenants: config.List(cfg.AllowedTenants), Required: config.List(cfg.RequiredRoles),
		AllowedEmailDomains: config.List(cfg.AllowedEmailDomains), Logger: logger, Metrics: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("access policy: %w", err)
	}
	logger.Info("access policy", "policy", admission.Describe())

	as, err := oauth.New(oauth.Config{
		PublicURL: cfg.Origin(), Clients: g.clients, Grants: g.grants, Keys: g.keeper,
		Store: g.store, Limiter: limiter, Upstream: idp,
		PreapprovedClients: config.List(cfg.PreapprovedClients), Logger: logger, Metrics: reg,
		Admit: admission.Admit, ClientIP: oauth.ForwardedClientIP(cfg.TrustedProxies),
	})
	if err != nil {
		return nil, fmt.Errorf("authorization server: %w", err)
	}
	// Until the session-key ring exists (Azure: created after provisioning) the endpoints that
	// sign or seal anything answer 503; metadata stays up.
	asHandler := as.Handler()
	guarded := ringGuard(g.keeper, asHandler)
	mux.Handle("/.well-known/", asHandler)
	for _, p := range []string{"/register", "/authorize", "/consent", "/oauth-callback", "/token", "/revoke"} {
		mux.Handle(p, guarded)
	}

	if g.proxy, err = mcpproxy.New(mcpproxy.Config{
		PublicURL: cfg.Origin(), AllowedOrigins: config.List(cfg.AllowedOrigins), BackendURL: cfg.BackendURL,
		Verifier: g.grants, Keys: g.keys, RateLimit: rate.Limit(cfg.RateLimitRPS), RateBurst: cfg.RateLimitBurst,
		MaxBodyBytes: cfg.MaxBodyBytes, Logger: logger, Registerer: reg, HTTPMetrics: httpMetrics,
		ReplicaID: replicaID, Transport: g.otel.Transport(mcpproxy.NewTransport(mcpproxy.DefaultBackendHeaderTimeout)),
	}); err != nil {
		return nil, fmt.Errorf("MCP proxy: %w", err)
	}
	g.proxy.Register(mux)
	// Legacy HTTP+SSE (/mcp/sse, /mcp/message): streams held here, messages between replicas
	// through the store's pub/sub.
	if g.sse, err = ssebridge.New(ssebridge.Config{
		Chain: g.proxy, BackendURL: cfg.BackendURL, Keys: g.keys, Store: g.store, ReplicaID: replicaID,
		Grants: g.grants, MaxStreams: cfg.SSEMaxStreams, MaxStreamsPerUser: cfg.SSEMaxStreamsPerUser,
		MaxPending: cfg.SSEMaxPendingMessages, MaxMessageBytes: cfg.MaxBodyBytes, Logger: logger, Registerer: reg,
		Transport: g.otel.Transport(mcpproxy.NewTransport(ssebridge.DefaultBackendTimeout)),
	}); err != nil {
		return nil, fmt.Errorf("SSE bridge: %w", err)
	}
	g.sse.Register(mux)

	mux.Handle("/healthz", ops.Health())
	mux.Handle("/readyz", ops.Ready(ops.ReadyConfig{
		Store: g.store, Keys: g.keys, Registry: g.replica,
		Checks: []ops.Check{{Name: "session-key ring", Fn: func(context.Context) error {
			if !g.keeper.Loaded() {
				return errors.New("not loaded")
			}
			return nil
		}}},
	}))
	page, err := landing.Handler(landing.Info{PublicURL: cfg.Origin(), DevLogin: cfg.DevLogin})
	if err != nil {
		return nil, err
	}
	mux.Handle("/", page)

	g.handler = telemetry.RequestID(g.otel.Handler(mux, "mcpgate"))
	g.metrics = telemetry.MetricsHandler(reg)
	return g, nil
}

// serve runs the listeners and background loops until ctx ends, then shuts down gracefully:
// new connections are refused, requests in flight finish, open streams are closed cleanly.
func (g *gateway) serve(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	var wg sync.WaitGroup
	for _, run := range []func(context.Context){g.keeper.Run, g.grants.Run, g.keys.Run, g.replica.Run, g.proxy.Run, g.sse.Run,
		func(ctx context.Context) { g.clients.SweepEvery(ctx, 24*time.Hour, 30*24*time.Hour) }} {
		wg.Add(1)
		go func() { defer wg.Done(); run(bg) }()
	}
	defer wg.Wait()

	streams, closeStreams := context.WithCancel(context.Background())
	defer closeStreams()
	api := &http.Server{
		Addr:              g.cfg.Listen,
		Handler:           g.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return streams },
		ErrorLog:          slog.NewLogLogger(g.logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (MCPGATE_LISTEN): %w", g.cfg.Listen, err)
	}
	errc := make(chan error, 2)
	go func() { errc <- api.Serve(ln) }()
	var metrics *http.Server
	if g.cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", g.cfg.MetricsListen)
		if err != nil {
			_ = api.Close()
			return fmt.Errorf("listen on %s (MCPGATE_METRICS_LISTEN): %w", g.cfg.MetricsListen, err)
		}
		mmux := http.NewServeMux()
		mmux.Handle("/metrics", g.metrics)
		metrics = &http.Server{Handler: mmux, ReadHeaderTimeout: 5 * time.Second}
		go func() { errc <- metrics.Serve(mln) }()
	}
	g.logger.Info("mcpgate serving", "listen", g.cfg.Listen, "public_url", g.cfg.Origin(),
		"mcp", g.cfg.Origin()+"/mcp", "metrics", g.cfg.MetricsListen, "backend", g.cfg.BackendURL, "version", version)

	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("server: %w", err)
		}
	}
	g.logger.Info("shutting down: finishing requests in flight, closing streams")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Streams never go idle by themselves: give ordinary requests a moment, then end the
	// streams (their handlers see the context end and close the response cleanly).
	timer := time.AfterFunc(2*time.Second, func() {
		_ = g.sse.Shutdown(shutdownCtx) // ends the legacy SSE streams (clients reconnect elsewhere)
		closeStreams()
	})
	defer timer.Stop()
	if metrics != nil {
		_ = metrics.Shutdown(shutdownCtx)
	}
	if err := api.Shutdown(shutdownCtx); err != nil {
		_ = api.Close()
	}
	stopBG()
	return nil
}

// ringGuard answers 503 while the session-key ring is not loaded.
func ringGuard(k *session.Keeper, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !k.Loaded() {
			w.Header().Set("Retry-After", "5")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":"temporarily_unavailable","error_description":"the gateway is starting: its session keys are not loaded yet"}`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// redisLogger routes go-redis's own messages into slog.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(_ context.Context, format string, v ...any) {
	r.l.Warn("redis", "message", fmt.Sprintf(format, v...))
}

// clientCache adapts the store to the client registry's cache.
type clientCache struct{ st store.Store }

func (c clientCache) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := c.st.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", clients.ErrNotFound, err)
	}
	return b, err
}

func (c clientCache) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	return c.st.Set(ctx, key, v, ttl)
}

func (c clientCache) Del(ctx context.Context, key string) error { return c.st.Del(ctx, key) }

// lazyCredential creates the Azure credential only when a setting needs one.
type lazyCredential struct {
	once sync.Once
	cred azcore.TokenCredential
	err  error
}

func (l *lazyCredential) get() (azcore.TokenCredential, error) {
	l.once.Do(func() {
		l.cred, l.err = azureauth.Workload(os.Getenv)
	})
	return l.cred, l.err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// registerRingMetrics exports the state of the session-key ring keeper: a replica that can no
// longer re-read the ring keeps its last good one (and holds a ring rotation back), which
// these show before a rotation does.
func registerRingMetrics(reg prometheus.Registerer, k *session.Keeper) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mcpgate_session_ring_loaded",
			Help: "1 when a session-key ring is loaded (0: the replica is not ready).",
		}, func() float64 {
			if k.Loaded() {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mcpgate_session_ring_reload_failures_total",
			Help: "Session-key ring loads that failed (source unreachable or an invalid document); the last good ring stays in use.",
		}, func() float64 { return float64(k.ReloadFailures()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mcpgate_session_ring_last_load_timestamp_seconds",
			Help: "Unix time of the latest successful session-key ring load (0: none yet).",
		}, func() float64 {
			if t := k.LastLoad(); !t.IsZero() {
				return float64(t.UnixNano()) / 1e9
			}
			return 0
		}),
	)
}
