// Package oauth is the gateway's OAuth 2.1 authorization server for MCP clients: RFC 8414
// metadata, RFC 9728 protected-resource metadata, dynamic client registration (RFC 7591), the
// authorization endpoint with a consent page, the callback from the upstream identity provider,
// the token endpoint (authorization_code and refresh_token grants) and revocation (RFC 7009).
//
// The server keeps no state of its own: pending authorizations, upstream states and
// authorization codes live in the store (single use through GETDEL, short TTLs, keys built from
// hashes of the random values so that no client-controlled string ever becomes a key), grants
// and tokens are the grants manager's, and client registrations are the clients registry's.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Scopes the gateway knows. ScopeTools is the gateway's own scope; ScopeOffline is accepted
// (refresh tokens go to every client registered for the refresh_token grant anyway).
const (
	ScopeTools   = "mcp:tools"
	ScopeOffline = "offline_access"
)

// Defaults and bounds of the Config durations.
const (
	DefaultCodeTTL    = 5 * time.Minute
	MaxCodeTTL        = 10 * time.Minute
	DefaultStateTTL   = 10 * time.Minute
	MaxStateTTL       = 30 * time.Minute
	DefaultConsentTTL = 30 * 24 * time.Hour
	// usedCodeTTL is how long a redeemed code's tombstone (code hash → grant id) is kept to
	// detect replays.
	usedCodeTTL = time.Hour
)

// ClientRegistry is what the server needs from the client registry (clients.Registry).
type ClientRegistry interface {
	// Get returns the client with this id (a DCR id, a CIMD https URL or a pre-registered id),
	// or an error wrapping clients.ErrNotFound.
	Get(ctx context.Context, clientID string) (*clients.Client, error)
	// Register validates and stores an RFC 7591 registration; a refused one is a
	// *clients.RegistrationError.
	Register(ctx context.Context, body []byte) (*clients.RegistrationResponse, error)
	// Authenticate checks the client's credentials for the token and revocation endpoints
	// (method is "none", "client_secret_basic" or "client_secret_post").
	Authenticate(ctx context.Context, clientID, secret, method string) (*clients.Client, error)
	// Touch records that a client was used (registrations unused for long are removed).
	Touch(ctx context.Context, clientID string) error
}

// GrantManager is what the server needs from the grants manager (grants.Manager).
type GrantManager interface {
	Issue(ctx context.Context, g grants.Grant, up identity.Tokens) (*grants.TokenSet, error)
	Refresh(ctx context.Context, refreshToken, clientID string, refreshUpstream grants.RefreshFunc) (*grants.TokenSet, *grants.Grant, error)
	Revoke(ctx context.Context, grantID string) error
	RevokeToken(ctx context.Context, token, clientID string) error
}

// Provider is the upstream identity provider (upstream.Provider).
type Provider interface {
	// AuthCodeURL is the IdP authorization URL for our own state, nonce and PKCE verifier.
	AuthCodeURL(state, nonce, verifier string) string
	// Exchange redeems the IdP's code and validates its ID token against nonce.
	Exchange(ctx context.Context, code, verifier, nonce string) (identity.User, identity.Tokens, error)
	// Refresh refreshes the upstream tokens (a disabled user makes it fail).
	Refresh(ctx context.Context, t identity.Tokens) (identity.User, identity.Tokens, error)
}

// RingSource yields the current session-key ring (session.Keeper).
type RingSource interface {
	Ring() *session.Ring
}

// Limits are the per-IP rate limits of the low-volume endpoints.
type Limits struct {
	Register  store.Limit
	Authorize store.Limit
	Token     store.Limit
}

// DefaultLimits are used for zero Limits fields.
var defaultLimits = Limits{
	Register:  store.PerMinute(10),
	Authorize: store.PerMinute(30),
	Token:     store.PerMinute(60),
}

// Config configures a Server. PublicURL, Clients, Grants, Keys, Store and Upstream are required.
type Config struct {
	// PublicURL is the gateway's public origin (MCPGATE_PUBLIC_URL), e.g.
	// "https://gw.example.com" or "http://127.0.0.1:8000": the issuer, and the base of every
	// resource and endpoint URL. It must not have a path, query or fragment.
	PublicURL string
	// ServerName is shown on the consent page (default "MCP server at <host>").
	ServerName string
	// Clients is the client registry.
	Clients ClientRegistry
	// Grants issues, refreshes and revokes grants.
	Grants GrantManager
	// Keys yields the session-key ring (MAC keys for the consent cookie and CSRF tokens).
	Keys RingSource
	// Store holds pending authorizations, upstream states and authorization codes.
	Store store.Store
	// Limiter rate-limits /register, /authorize and /token per client IP. Nil disables limits.
	Limiter store.Limiter
	// Limits overrides the default per-IP limits (zero fields keep the defaults:
	// register 10/min, authorize 30/min, token 60/min).
	Limits Limits
	// Upstream is the upstream identity provider.
	Upstream Provider
	// PreapprovedClients are client ids that skip the consent page
	// (MCPGATE_PREAPPROVED_CLIENTS).
	PreapprovedClients []string
	// Admit, when set, decides whether a signed-in user may have a session (the policy on the
	// upstream identity: tenants, roles or groups, e-mail domains). It is called after the
	// upstream code exchange at /oauth-callback and after every upstream refresh. A non-nil
	// error refuses: the callback shows a refusal page and issues no code; a refresh answers
	// invalid_grant and ends the session. The error may implement `Explain() (title, hint
	// string)` for the page and `Reason() string` (a short, bounded label) for logs.
	Admit func(ctx context.Context, u identity.User) error
	// ClientIP returns the client address used for rate limits (default: the host of
	// r.RemoteAddr). Behind a trusted proxy, derive it from X-Forwarded-For here.
	ClientIP func(r *http.Request) string
	// Logger receives logs; never tokens, codes, cookies or state values. Nil discards.
	Logger *slog.Logger
	// Metrics receives the auth-funnel counters. Nil registers nothing.
	Metrics prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
	// CodeTTL is the authorization-code lifetime (default 5 min, at most 10 min).
	CodeTTL time.Duration
	// StateTTL bounds one authorization flow, from /authorize to the IdP's callback: consent
	// page plus upstream sign-in together (default 10 min, at most 30 min). The flow cookie
	// (Max-Age = StateTTL) and every record of the flow (pending authorization, upstream
	// state) share one deadline, StateTTL after /authorize: a record written later gets what
	// is left, never a fresh StateTTL, so no flow outlives its cookie.
	StateTTL time.Duration
	// ConsentTTL is how long a remembered consent lasts (default 30 days).
	ConsentTTL time.Duration
}

// Server is the authorization server. Build it with New and mount it with Register.
type Server struct {
	issuer     string
	origin     *url.URL
	serverName string
	resources  map[string]bool
	clients    ClientRegistry
	grants     GrantManager
	keys       RingSource
	st         store.Store
	limiter    store.Limiter
	limits     Limits
	up         Provider
	preapp     map[string]bool
	admit      func(context.Context, identity.User) error
	clientIP   func(*http.Request) string
	log        *slog.Logger
	m          *metrics
	now        func() time.Time
	codeTTL    time.Duration
	stateTTL   time.Duration
	consentTTL time.Duration
	cookies    cookieNames
	pages      *template.Template
	styleHash  string
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	origin, err := parsePublicURL(cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.Clients == nil:
		return nil, errors.New("oauth: Config.Clients is required")
	case cfg.Grants == nil:
		return nil, errors.New("oauth: Config.Grants is required")
	case cfg.Keys == nil:
		return nil, errors.New("oauth: Config.Keys is required")
	case cfg.Store == nil:
		return nil, errors.New("oauth: Config.Store is required")
	case cfg.Upstream == nil:
		return nil, errors.New("oauth: Config.Upstream is required")
	}
	s := &Server{
		issuer:     origin.String(),
		origin:     origin,
		serverName: cfg.ServerName,
		clients:    cfg.Clients,
		grants:     cfg.Grants,
		keys:       cfg.Keys,
		st:         cfg.Store,
		limiter:    cfg.Limiter,
		limits:     cfg.Limits,
		up:         cfg.Upstream,
		preapp:     make(map[string]bool, len(cfg.PreapprovedClients)),
		admit:      cfg.Admit,
		clientIP:   cfg.ClientIP,
		log:        cfg.Logger,
		now:        cfg.Now,
		codeTTL:    cfg.CodeTTL,
		stateTTL:   cfg.StateTTL,
		consentTTL: cfg.ConsentTTL,
	}
	if s.serverName == "" {
		s.serverName = "MCP server at " + origin.Host
	}
	s.resources = map[string]bool{s.issuer: true, s.issuer + "/mcp": true, s.issuer + "/mcp/sse": true}
	for _, id := range cfg.PreapprovedClients {
		if id = strings.TrimSpace(id); id != "" {
			s.preapp[id] = true
		}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.clientIP == nil {
		s.clientIP = remoteIP
	}
	switch {
	case s.codeTTL == 0:
		s.codeTTL = DefaultCodeTTL
	case s.codeTTL < 0 || s.codeTTL > MaxCodeTTL:
		return nil, fmt.Errorf("oauth: CodeTTL %s must be between 0 and %s", s.codeTTL, MaxCodeTTL)
	}
	switch {
	case s.stateTTL == 0:
		s.stateTTL = DefaultStateTTL
	case s.stateTTL < time.Minute || s.stateTTL > MaxStateTTL:
		return nil, fmt.Errorf("oauth: StateTTL %s must be between 1m and %s", s.stateTTL, MaxStateTTL)
	}
	switch {
	case s.consentTTL == 0:
		s.consentTTL = DefaultConsentTTL
	case s.consentTTL < 0:
		return nil, fmt.Errorf("oauth: ConsentTTL %s must not be negative", s.consentTTL)
	}
	if s.limits.Register.Rate == 0 {
		s.limits.Register = defaultLimits.Register
	}
	if s.limits.Authorize.Rate == 0 {
		s.limits.Authorize = defaultLimits.Authorize
	}
	if s.limits.Token.Rate == 0 {
		s.limits.Token = defaultLimits.Token
	}
	s.cookies = newCookieNames(origin)
	if s.pages, s.styleHash, err = loadPages(); err != nil {
		return nil, err
	}
	if s.m, err = newMetrics(cfg.Metrics); err != nil {
		return nil, err
	}
	return s, nil
}

// parsePublicURL checks that raw is an http(s) origin without path, query or fragment, and
// returns it normalised (lower-case scheme and host, no trailing slash). Plain http is allowed
// only on a loopback host.
func parsePublicURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(raw, "/"))
	if err != nil || raw == "" {
		return nil, fmt.Errorf("oauth: PublicURL %q is not a URL", raw)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.User != nil ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("oauth: PublicURL %q must be an origin such as https://gw.example.com", raw)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("oauth: PublicURL %q: plain http is allowed only on a loopback address", raw)
	}
	return u, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Issuer is the authorization server's issuer identifier (the public origin).
func (s *Server) Issuer() string { return s.issuer }

// Resources are the RFC 8707 resources tokens may be bound to: the origin, origin/mcp and
// origin/mcp/sse.
func (s *Server) Resources() []string {
	return []string{s.issuer, s.issuer + "/mcp", s.issuer + "/mcp/sse"}
}

// Register mounts every endpoint on mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("/.well-known/", s.handleWellKnownUnknown)
	mux.HandleFunc("/.well-known/oauth-authorization-server", s.handleASMetadata)
	mux.HandleFunc("/.well-known/oauth-protected-resource", s.handlePRM(s.issuer))
	mux.HandleFunc("/.well-known/oauth-protected-resource/mcp", s.handlePRM(s.issuer+"/mcp"))
	mux.HandleFunc("/.well-known/oauth-protected-resource/mcp/sse", s.handlePRM(s.issuer+"/mcp/sse"))
	mux.HandleFunc("/register", s.handleRegister)
	mux.HandleFunc("/authorize", s.handleAuthorize)
	mux.HandleFunc("/consent", s.handleConsent)
	mux.HandleFunc("/oauth-callback", s.handleCallback)
	mux.HandleFunc("/token", s.handleToken)
	mux.HandleFunc("/revoke", s.handleRevoke)
}

// Handler returns a mux with only the authorization server's endpoints (for tests and simple
// setups).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return mux
}

// remoteIP is the default ClientIP: the host part of RemoteAddr.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// allow applies the per-IP limit for endpoint. It writes the refusal itself (429 with
// Retry-After, or 503 when the limiter is down: fail closed) and reports whether to go on.
func (s *Server) allow(w http.ResponseWriter, r *http.Request, endpoint string, lim store.Limit, html bool) bool {
	if s.limiter == nil {
		return true
	}
	res, err := s.limiter.Allow(r.Context(), store.Key("ratelimit", "oauth", endpoint, s.clientIP(r)), lim)
	if err != nil {
		s.log.ErrorContext(r.Context(), "rate limiter unavailable", "endpoint", endpoint, "err", err)
		s.m.event(endpoint, "unavailable")
		if html {
			s.errorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable", "The sign-in service cannot reach its data store. Try again in a minute.", "")
		} else {
			writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the service is temporarily unavailable")
		}
		return false
	}
	if res.Allowed {
		return true
	}
	secs := int(res.RetryAfter.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", fmt.Sprint(secs))
	s.m.event(endpoint, "rate_limited")
	if html {
		s.errorPage(w, r, http.StatusTooManyRequests, "Too many requests", "Too many sign-in attempts from your address. Wait a minute and try again.", "")
	} else {
		writeOAuthError(w, http.StatusTooManyRequests, "too_many_requests", "too many requests; retry later")
	}
	return false
}
