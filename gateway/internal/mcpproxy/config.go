// Package mcpproxy is the gateway's MCP API: the policy chain that guards every MCP request
// (Host/Origin and CORS, bearer token, grant verification, per-user rate limit, header
// sanitising) and the Streamable HTTP reverse proxy that forwards /mcp to the function app with
// the function key. The chain's pieces are exported (Chain, Call, Endpoint, BackendHeaders) so
// the legacy SSE bridge (/mcp/sse, /mcp/message) can run the same chain.
//
// Headers the backend receives (and may trust, because the gateway removes any the client sent):
//
//	x-functions-key        the function key
//	X-MCPGate-User-Id      the user's stable id (Entra object id, else the IdP subject)
//	X-MCPGate-User-Name    the display name (`name`), when known
//	X-MCPGate-Username     `preferred_username` (UPN or e-mail), when known
//	X-MCPGate-Tenant-Id    the Entra tenant id, when known
//	X-MCPGate-Client-Id    the OAuth client id the grant was issued to
//
// Values are UTF-8; a value holding anything but printable ASCII (or a '%') is
// percent-encoded (RFC 3986), so a backend should percent-decode the name headers.
package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/telemetry"
)

// Verifier checks an access token for a resource (grants.Manager satisfies it). It returns
// grants.ErrInvalidToken (→ 401) or grants.ErrUnavailable (→ 503). The chain passes the
// request's context: Verify bounds its own store reads, so that an unreachable store gives a
// quick 503 (grants.Options.LookupTimeout).
type Verifier interface {
	Verify(ctx context.Context, accessToken, resource string) (*grants.Grant, error)
}

// KeySource yields the function key (funckey.Keys satisfies it). Current fails only when no key
// has ever loaded; Refresh reloads it after a backend 401 (single-flight, rate limited).
type KeySource interface {
	Current(ctx context.Context) (string, error)
	Refresh(ctx context.Context) error
}

// Config configures the proxy. PublicURL, BackendURL, Verifier and Keys are required.
type Config struct {
	// PublicURL is the gateway's public origin (scheme://host[:port]); resources and
	// protected-resource-metadata URLs derive from it, never from the request.
	PublicURL string
	// AllowedOrigins are the browser origins allowed to call the MCP endpoints (default: the
	// public origin). A request with any other Origin gets 403.
	AllowedOrigins []string
	// BackendURL is the function app's base URL; /mcp is proxied to BackendURL + "/mcp".
	BackendURL string
	// Verifier verifies access tokens.
	Verifier Verifier
	// Keys supplies the function key.
	Keys KeySource
	// RateLimit is the sustained rate per user and client on this replica (requests per
	// second; split the global limit across replicas). 0 means 10/s; rate.Inf disables.
	RateLimit rate.Limit
	// RateBurst is the burst per user and client on this replica (default 2×RateLimit, ≥ 1).
	RateBurst int
	// MaxBodyBytes bounds a request body (default 5 MiB, above go-sdk's 4 MiB so that the
	// backend's own 413 reaches the client).
	MaxBodyBytes int64
	// KeepAlive is the interval of SSE comment keep-alives on idle event streams (default 15 s,
	// well under Azure's 230 s front-end limit). Negative disables.
	KeepAlive time.Duration
	// BackendHeaderTimeout bounds the wait for the backend's response headers (default 240 s;
	// stateless JSON responses send headers only when the tool finishes). Exceeded: 504.
	BackendHeaderTimeout time.Duration
	// BodyReadTimeout bounds reading a request body (default 30 s, DefaultBodyReadTimeout):
	// a client that declares a body and stops sending gets 408 and frees its connection.
	BodyReadTimeout time.Duration
	// WriteProgressTimeout bounds each write of a response to the client (default 30 s,
	// DefaultWriteProgressTimeout): a client that stops reading is cut off, freeing the
	// goroutine and the backend connection; streams stay open as long as they move.
	WriteProgressTimeout time.Duration
	// Transport is the backend round tripper (default: a tuned http.Transport). Wrap it for
	// tracing (telemetry.OTel.Transport).
	Transport http.RoundTripper
	// Scope is the scope named in WWW-Authenticate challenges (default "mcp:tools").
	Scope string
	// Logger receives the access log (JSON recommended) and operational messages.
	Logger *slog.Logger
	// Registerer receives the proxy's Prometheus metrics (nil: not registered).
	Registerer prometheus.Registerer
	// HTTPMetrics, when set, is the request counter/histogram shared with the other endpoints
	// (else the proxy registers its own with Registerer).
	HTTPMetrics *telemetry.HTTPMetrics
	// ReplicaID names this replica in logs.
	ReplicaID string
}

// Endpoint is one public MCP endpoint: its path, the RFC 8707 resource a token must be good
// for, and the protected-resource-metadata URL its challenges point at.
type Endpoint struct {
	// Name labels metrics and logs ("/mcp").
	Name string
	// Resource is the resource identifier (origin + path).
	Resource string
	// MetadataURL is the RFC 9728 document for this endpoint.
	MetadataURL string

	challengeMissing []string // WWW-Authenticate for a missing token
	challengeInvalid []string // WWW-Authenticate for an invalid token
}

// Proxy is the MCP API handler set.
type Proxy struct {
	cfg       Config
	origin    string // normalised public origin
	host      string // public host[:port] as it appears in Host
	hostAlt   string // public host with the scheme's default port made explicit, or ""
	origins   map[string]struct{}
	backend   *url.URL
	mcp       Endpoint
	log       *slog.Logger
	limiter   *limiter
	metrics   *metrics
	forwarder *forwarder
}

// Defaults.
const (
	DefaultMaxBodyBytes         = 5 << 20
	DefaultKeepAlive            = 15 * time.Second
	DefaultBackendHeaderTimeout = 240 * time.Second
	DefaultBodyReadTimeout      = 30 * time.Second
	DefaultWriteProgressTimeout = 30 * time.Second
	DefaultRateLimit            = rate.Limit(10)
	DefaultScope                = "mcp:tools"
)

// New validates cfg and builds the proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Verifier == nil || cfg.Keys == nil {
		return nil, errors.New("mcpproxy: Verifier and Keys are required")
	}
	origin, pu, err := parseOrigin(cfg.PublicURL)
	if err != nil {
		return nil, fmt.Errorf("mcpproxy: public URL: %w", err)
	}
	backend, err := url.Parse(strings.TrimSuffix(cfg.BackendURL, "/"))
	if err != nil || (backend.Scheme != "http" && backend.Scheme != "https") || backend.Host == "" {
		return nil, fmt.Errorf("mcpproxy: backend URL %q must be an absolute http(s) URL", cfg.BackendURL)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.BackendHeaderTimeout <= 0 {
		cfg.BackendHeaderTimeout = DefaultBackendHeaderTimeout
	}
	if cfg.BodyReadTimeout <= 0 {
		cfg.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if cfg.WriteProgressTimeout <= 0 {
		cfg.WriteProgressTimeout = DefaultWriteProgressTimeout
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = max(1, int(2*cfg.RateLimit))
		if cfg.RateLimit == rate.Inf {
			cfg.RateBurst = 1
		}
	}
	if cfg.Scope == "" {
		cfg.Scope = DefaultScope
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{cfg: cfg, origin: origin, host: strings.ToLower(pu.Host), backend: backend, log: cfg.Logger,
		origins: map[string]struct{}{}}
	if pu.Port() == "" {
		p.hostAlt = p.host + map[string]string{"http": ":80", "https": ":443"}[pu.Scheme]
	}
	allowed := cfg.AllowedOrigins
	if len(allowed) == 0 {
		allowed = []string{origin}
	}
	for _, o := range allowed {
		n, _, err := parseOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("mcpproxy: allowed origin %q: %w", o, err)
		}
		p.origins[n] = struct{}{}
	}
	p.mcp = p.Endpoint("/mcp")
	p.limiter = newLimiter(cfg.RateLimit, cfg.RateBurst)
	p.metrics = newMetrics(cfg.Registerer, cfg.HTTPMetrics)
	p.forwarder = newForwarder(p, backend)
	return p, nil
}

// parseOrigin normalises an origin (scheme://host[:port], lower case, no path).
func parseOrigin(s string) (string, *url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(strings.TrimSpace(s), "/"))
	if err != nil {
		return "", nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", nil, fmt.Errorf("%q is not an http(s) origin", s)
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	return u.Scheme + "://" + u.Host, u, nil
}

// Endpoint describes the public endpoint at path (e.g. "/mcp", "/mcp/sse"): its resource and
// metadata URL, with the challenges precomputed.
func (p *Proxy) Endpoint(path string) Endpoint {
	ep := Endpoint{Name: path, Resource: p.origin + path, MetadataURL: p.origin + "/.well-known/oauth-protected-resource" + path}
	ep.challengeMissing = []string{fmt.Sprintf(`Bearer resource_metadata="%s", scope="%s"`, ep.MetadataURL, p.cfg.Scope)}
	ep.challengeInvalid = []string{fmt.Sprintf(`Bearer error="invalid_token", error_description="The access token is invalid or expired", resource_metadata="%s", scope="%s"`, ep.MetadataURL, p.cfg.Scope)}
	return ep
}

// Register mounts the Streamable HTTP endpoint /mcp on mux.
func (p *Proxy) Register(mux *http.ServeMux) {
	mux.Handle("/mcp", p.Handler())
}

// Handler is the /mcp handler (chain + Streamable HTTP proxy).
func (p *Proxy) Handler() http.Handler {
	return p.Chain(p.mcp, HandlerFunc(p.forwarder.serve))
}

// Run evicts idle rate limiters until ctx ends. Optional: without it idle limiters stay in
// memory (bounded by the number of distinct user+client pairs).
func (p *Proxy) Run(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.limiter.sweep(now)
		}
	}
}

// hostOK reports whether the request's Host is the public host.
func (p *Proxy) hostOK(host string) bool {
	if len(host) == len(p.host) && strings.EqualFold(host, p.host) {
		return true
	}
	return p.hostAlt != "" && strings.EqualFold(host, p.hostAlt)
}
