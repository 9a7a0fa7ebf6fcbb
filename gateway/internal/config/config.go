// Package config defines mcpgate's settings: one table of flags, each mirrored by an
// environment variable, with the local defaults of DESIGN.md. The same table renders the
// README's configuration reference (`mcpgate config --markdown`), so the two never drift.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Serve is the configuration of `mcpgate serve`.
type Serve struct {
	PublicURL     string
	Listen        string
	MetricsListen string
	BackendURL    string

	RedisURL   string
	RedisEntra bool

	KeyVaultURL       string
	FunctionKey       string
	FunctionKeyFile   string
	FunctionKeySecret string

	SessionKeysFile   string
	SessionKeysSecret string

	ClientsStore string
	ClientsFile  string

	UpstreamIssuer       string
	EntraTenantID        string
	UpstreamClientID     string
	UpstreamClientSecret string
	UpstreamFICClientID  string
	UpstreamScopes       string
	DevLogin             bool
	AllowLoopbackCIMD    bool

	PreapprovedClients  string
	AllowedOrigins      string
	AllowedTenants      string
	RequiredRoles       string
	AllowedEmailDomains string

	// SessionKeysReloadInterval is how often the session-key ring is re-read.
	SessionKeysReloadInterval time.Duration

	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	RateLimitRPS    float64
	RateLimitBurst  int
	MaxBodyBytes    int64
	TrustedProxies  int
	ReplicaID       string
	LogLevel        string
	// LogFlushInterval bounds how long an info or debug log line (the access log) may wait in
	// memory before it is written; 0 writes every line at once.
	LogFlushInterval time.Duration

	// Legacy SSE limits, per replica.
	SSEMaxStreams         int
	SSEMaxStreamsPerUser  int
	SSEMaxPendingMessages int
}

// Setting is one row of the configuration table.
type Setting struct {
	Flag    string
	Env     string
	Default string
	Usage   string
	bind    func(fs *flag.FlagSet, name, def, usage string)
}

// StateDirDefault is the local state directory (git-ignored) used by the local defaults.
const StateDirDefault = ".mcpgate"

// Settings returns the table of `mcpgate serve` settings bound to c.
func (c *Serve) Settings() []Setting {
	str := func(p *string) func(*flag.FlagSet, string, string, string) {
		return func(fs *flag.FlagSet, n, d, u string) { fs.StringVar(p, n, d, u) }
	}
	boolean := func(p *bool) func(*flag.FlagSet, string, string, string) {
		return func(fs *flag.FlagSet, n, d, u string) { v, _ := strconv.ParseBool(d); fs.BoolVar(p, n, v, u) }
	}
	dur := func(p *time.Duration) func(*flag.FlagSet, string, string, string) {
		return func(fs *flag.FlagSet, n, d, u string) { v, _ := time.ParseDuration(d); fs.DurationVar(p, n, v, u) }
	}
	flt := func(p *float64) func(*flag.FlagSet, string, string, string) {
		return func(fs *flag.FlagSet, n, d, u string) { v, _ := strconv.ParseFloat(d, 64); fs.Float64Var(p, n, v, u) }
	}
	integer := func(p *int) func(*flag.FlagSet, string, string, string) {
		return func(fs *flag.FlagSet, n, d, u string) { v, _ := strconv.Atoi(d); fs.IntVar(p, n, v, u) }
	}
	i64 := func(p *int64) func(*flag.FlagSet, string, string, string) {
		return func(fs *flag.FlagSet, n, d, u string) { v, _ := strconv.ParseInt(d, 10, 64); fs.Int64Var(p, n, v, u) }
	}
	return []Setting{
		{"public-url", "MCPGATE_PUBLIC_URL", "http://127.0.0.1:8000", "public base URL: OAuth issuer and the base of every MCP resource", str(&c.PublicURL)},
		{"listen", "MCPGATE_LISTEN", "127.0.0.1:8000", "API listener (OAuth + MCP)", str(&c.Listen)},
		{"metrics-listen", "MCPGATE_METRICS_LISTEN", "127.0.0.1:9090", "Prometheus /metrics listener; never expose it publicly (empty: off)", str(&c.MetricsListen)},
		{"backend-url", "MCPGATE_BACKEND_URL", "http://127.0.0.1:7071", "function app base URL (MCP at /mcp)", str(&c.BackendURL)},
		{"redis-url", "MCPGATE_REDIS_URL", "", "Redis URL (redis:// or rediss://); empty: in-memory store, one replica only", str(&c.RedisURL)},
		{"redis-entra", "MCPGATE_REDIS_ENTRA", "false", "authenticate to Redis with Entra ID (go-redis-entraid, managed identity AZURE_CLIENT_ID)", boolean(&c.RedisEntra)},
		{"keyvault-url", "MCPGATE_KEYVAULT_URL", "", "Key Vault holding the function key and the session-key ring (empty: local files)", str(&c.KeyVaultURL)},
		{"function-key", "MCPGATE_FUNCTION_KEY", "", "function key as a static value (prefer the file or Key Vault)", str(&c.FunctionKey)},
		{"function-key-file", "MCPGATE_FUNCTION_KEY_FILE", ".mcpgate/function-key", "one-line file holding the function key, re-read when it changes", str(&c.FunctionKeyFile)},
		{"function-key-secret", "MCPGATE_FUNCTION_KEY_SECRET", "", "Key Vault secret name of the function key", str(&c.FunctionKeySecret)},
		{"session-keys-file", "MCPGATE_SESSION_KEYS_FILE", ".mcpgate/session-keys.json", "session-key ring JSON file (created on first local start)", str(&c.SessionKeysFile)},
		{"session-keys-secret", "MCPGATE_SESSION_KEYS_SECRET", "", "Key Vault secret name of the session-key ring", str(&c.SessionKeysSecret)},
		{"session-keys-reload-interval", "MCPGATE_SESSION_KEYS_RELOAD_INTERVAL", "1m", "how often the session-key ring is re-read (1s–1h); `mcpgate secrets rotate` without --gateway-url waits this long before promoting a next key", dur(&c.SessionKeysReloadInterval)},
		{"clients-store", "MCPGATE_CLIENTS_STORE", ".mcpgate/clients", "durable client registrations: a directory or a blob container URL (https://…/container)", str(&c.ClientsStore)},
		{"clients-file", "MCPGATE_CLIENTS_FILE", "", "JSON file of pre-registered OAuth clients", str(&c.ClientsFile)},
		{"upstream-issuer", "MCPGATE_UPSTREAM_ISSUER", "", "upstream OIDC issuer URL (any OIDC provider)", str(&c.UpstreamIssuer)},
		{"entra-tenant-id", "MCPGATE_ENTRA_TENANT_ID", "", "Entra tenant id: sets the issuer to https://login.microsoftonline.com/{tenant}/v2.0", str(&c.EntraTenantID)},
		{"upstream-client-id", "MCPGATE_UPSTREAM_CLIENT_ID", "", "the gateway's client id at the upstream IdP (Entra app registration)", str(&c.UpstreamClientID)},
		{"upstream-client-secret", "MCPGATE_UPSTREAM_CLIENT_SECRET", "", "upstream client secret (fallback; prefer the federated credential)", str(&c.UpstreamClientSecret)},
		{"upstream-fic-client-id", "MCPGATE_UPSTREAM_FIC_CLIENT_ID", "", "client id of the managed identity whose token is the federated client assertion", str(&c.UpstreamFICClientID)},
		{"upstream-scopes", "MCPGATE_UPSTREAM_SCOPES", "", "extra upstream scopes, space separated (openid profile offline_access are always requested)", str(&c.UpstreamScopes)},
		{"dev", "MCPGATE_DEV_LOGIN", "false", "development login instead of an IdP (only when listening on loopback)", boolean(&c.DevLogin)},
		{"dev-allow-loopback-cimd", "MCPGATE_DEV_ALLOW_LOOPBACK_CIMD", "false", "tests only, with --dev: fetch client metadata documents from loopback", boolean(&c.AllowLoopbackCIMD)},
		{"preapproved-clients", "MCPGATE_PREAPPROVED_CLIENTS", "", "comma-separated client ids that skip the consent page", str(&c.PreapprovedClients)},
		{"allowed-origins", "MCPGATE_ALLOWED_ORIGINS", "", "comma-separated browser origins allowed on /mcp (default: the public origin)", str(&c.AllowedOrigins)},
		{"allowed-tenants", "MCPGATE_ALLOWED_TENANTS", "", "comma-separated Entra tenant ids allowed to sign in (empty: any)", str(&c.AllowedTenants)},
		{"required-roles", "MCPGATE_REQUIRED_ROLES", "", "comma-separated app roles or group ids; a user needs one of them (empty: none)", str(&c.RequiredRoles)},
		{"allowed-email-domains", "MCPGATE_ALLOWED_EMAIL_DOMAINS", "", "comma-separated e-mail domains allowed to sign in (empty: any)", str(&c.AllowedEmailDomains)},
		{"access-token-ttl", "MCPGATE_ACCESS_TOKEN_TTL", "1h", "lifetime of access tokens (sealed session keys)", dur(&c.AccessTokenTTL)},
		{"refresh-token-ttl", "MCPGATE_REFRESH_TOKEN_TTL", "720h", "lifetime of refresh tokens and sessions", dur(&c.RefreshTokenTTL)},
		{"rate-limit-rps", "MCPGATE_RATE_LIMIT_RPS", "20", "MCP calls per second per user and client, per replica", flt(&c.RateLimitRPS)},
		{"rate-limit-burst", "MCPGATE_RATE_LIMIT_BURST", "40", "burst of MCP calls per user and client, per replica", integer(&c.RateLimitBurst)},
		{"max-body-bytes", "MCPGATE_MAX_BODY_BYTES", "4194304", "largest MCP request body accepted", i64(&c.MaxBodyBytes)},
		{"trusted-proxies", "MCPGATE_TRUSTED_PROXIES", "0", "reverse proxies in front of the gateway that append to X-Forwarded-For (1 behind Container Apps ingress); used for per-IP rate limits", integer(&c.TrustedProxies)},
		{"replica-id", "MCPGATE_REPLICA_ID", "", "this replica's id (default: hostname + random suffix)", str(&c.ReplicaID)},
		{"sse-max-streams", "MCPGATE_SSE_MAX_STREAMS", "10000", "legacy SSE streams open at once on one replica (503 beyond)", integer(&c.SSEMaxStreams)},
		{"sse-max-streams-per-user", "MCPGATE_SSE_MAX_STREAMS_PER_USER", "32", "legacy SSE streams open at once per user on one replica (503 beyond)", integer(&c.SSEMaxStreamsPerUser)},
		{"sse-max-pending-messages", "MCPGATE_SSE_MAX_PENDING_MESSAGES", "32", "messages of one legacy SSE stream accepted and not yet answered (503, or a JSON-RPC error on the stream, beyond)", integer(&c.SSEMaxPendingMessages)},
		{"log-level", "MCPGATE_LOG_LEVEL", "info", "debug, info, warn or error", str(&c.LogLevel)},
		{"log-flush-interval", "MCPGATE_LOG_FLUSH_INTERVAL", "200ms", "longest time an info line (the access log) waits in memory before it is written; warnings and errors are written at once; 0: every line at once", dur(&c.LogFlushInterval)},
	}
}

// Bind registers every setting on fs. Defaults come from the environment when the variable is
// set, so flags override environment variables, which override built-in defaults.
func Bind(fs *flag.FlagSet, settings []Setting, getenv func(string) string) {
	for _, s := range settings {
		def := s.Default
		if v := getenv(s.Env); v != "" {
			def = v
		}
		s.bind(fs, s.Flag, def, s.Usage+" ($"+s.Env+")")
	}
}

// CheckEnv reports environment values that the flag parser would reject (bad booleans,
// numbers or durations), since flag.FlagSet silently ignores bad defaults.
func CheckEnv(settings []Setting, getenv func(string) string) error {
	var errs []error
	for _, s := range settings {
		v := getenv(s.Env)
		if v == "" {
			continue
		}
		fs := flag.NewFlagSet("check", flag.ContinueOnError)
		fs.SetOutput(discard{})
		s.bind(fs, s.Flag, s.Default, "")
		if err := fs.Set(s.Flag, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %v", s.Env, v, err))
		}
	}
	return errors.Join(errs...)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Markdown renders settings as the README's configuration table.
func Markdown(settings []Setting) string {
	var b strings.Builder
	b.WriteString("| flag | environment variable | default | meaning |\n|---|---|---|---|\n")
	for _, s := range settings {
		def := s.Default
		if def == "" {
			def = "—"
		} else {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s |\n", s.Flag, s.Env, def, s.Usage)
	}
	return b.String()
}

// Validate checks the combination of settings and says what to do when it is wrong.
func (c *Serve) Validate() error {
	var errs []error
	u, err := url.Parse(c.PublicURL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		errs = append(errs, fmt.Errorf("--public-url %q must be an absolute http(s) URL such as https://mcp.example.com", c.PublicURL))
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		errs = append(errs, fmt.Errorf("--public-url %q must be an origin without path, query or fragment", c.PublicURL))
	case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()):
		errs = append(errs, fmt.Errorf("--public-url %q uses http on a non-loopback host: use https", c.PublicURL))
	}
	if _, err := url.Parse(c.BackendURL); err != nil || c.BackendURL == "" {
		errs = append(errs, fmt.Errorf("--backend-url %q is not a URL", c.BackendURL))
	}
	upstreams := 0
	if c.UpstreamIssuer != "" {
		upstreams++
	}
	if c.EntraTenantID != "" {
		upstreams++
	}
	if c.DevLogin {
		upstreams++
	}
	switch {
	case upstreams == 0:
		errs = append(errs, errors.New("no identity provider: set MCPGATE_ENTRA_TENANT_ID or MCPGATE_UPSTREAM_ISSUER (with MCPGATE_UPSTREAM_CLIENT_ID), or use --dev for a local development login"))
	case upstreams > 1:
		errs = append(errs, errors.New("choose one identity provider: MCPGATE_ENTRA_TENANT_ID, MCPGATE_UPSTREAM_ISSUER or --dev"))
	case !c.DevLogin && c.UpstreamClientID == "":
		errs = append(errs, errors.New("MCPGATE_UPSTREAM_CLIENT_ID is required with an upstream identity provider"))
	case !c.DevLogin && c.UpstreamClientSecret == "" && c.UpstreamFICClientID == "":
		errs = append(errs, errors.New("set MCPGATE_UPSTREAM_FIC_CLIENT_ID (federated credential, recommended) or MCPGATE_UPSTREAM_CLIENT_SECRET"))
	}
	if c.DevLogin {
		host, _, err := net.SplitHostPort(c.Listen)
		if err != nil || !IsLoopbackHost(host) {
			errs = append(errs, fmt.Errorf("--dev is allowed only when listening on loopback (127.0.0.1 or [::1]); --listen is %q", c.Listen))
		}
	}
	if c.AllowLoopbackCIMD && !c.DevLogin {
		errs = append(errs, errors.New("--dev-allow-loopback-cimd is a test switch and needs --dev"))
	}
	if c.KeyVaultURL == "" && (c.FunctionKeySecret != "" || c.SessionKeysSecret != "") {
		errs = append(errs, errors.New("MCPGATE_FUNCTION_KEY_SECRET / MCPGATE_SESSION_KEYS_SECRET need MCPGATE_KEYVAULT_URL"))
	}
	if c.SessionKeysReloadInterval < time.Second || c.SessionKeysReloadInterval > time.Hour {
		errs = append(errs, errors.New("MCPGATE_SESSION_KEYS_RELOAD_INTERVAL must be between 1s and 1h"))
	}
	if c.LogFlushInterval < 0 || c.LogFlushInterval > 10*time.Second {
		errs = append(errs, errors.New("MCPGATE_LOG_FLUSH_INTERVAL must be between 0 and 10s"))
	}
	if c.AccessTokenTTL <= 0 || c.RefreshTokenTTL < c.AccessTokenTTL {
		errs = append(errs, errors.New("token lifetimes must be positive and the refresh lifetime at least the access lifetime"))
	}
	if c.RateLimitRPS <= 0 || c.RateLimitBurst <= 0 || c.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("rate limits and --max-body-bytes must be positive"))
	}
	for _, l := range []struct {
		v         int
		flag, env string
	}{
		{c.SSEMaxStreams, "sse-max-streams", "MCPGATE_SSE_MAX_STREAMS"},
		{c.SSEMaxStreamsPerUser, "sse-max-streams-per-user", "MCPGATE_SSE_MAX_STREAMS_PER_USER"},
		{c.SSEMaxPendingMessages, "sse-max-pending-messages", "MCPGATE_SSE_MAX_PENDING_MESSAGES"},
	} {
		if l.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s (%s) must be a positive integer, got %d", l.flag, l.env, l.v))
		}
	}
	return errors.Join(errs...)
}

// IsLoopbackHost reports whether host (a name or IP, without port or brackets) is loopback.
func IsLoopbackHost(host string) bool {
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// List splits a comma-separated setting, dropping empty items.
func List(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Issuer returns the upstream issuer URL.
func (c *Serve) Issuer() string {
	if c.EntraTenantID != "" {
		return "https://login.microsoftonline.com/" + url.PathEscape(c.EntraTenantID) + "/v2.0"
	}
	return c.UpstreamIssuer
}

// Origin is the public URL without a trailing slash.
func (c *Serve) Origin() string { return strings.TrimRight(c.PublicURL, "/") }

// DefaultReplicaID is the hostname plus a suffix.
func DefaultReplicaID(suffix string) string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "replica"
	}
	return h + "-" + suffix
}

// Resolve makes relative local paths relative to the state directory's parent (the working
// directory), and returns the paths that should exist.
func Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Clean(p)
}

// Envs lists the environment variables of settings, sorted (for tests and docs).
func Envs(settings []Setting) []string {
	out := make([]string, 0, len(settings))
	for _, s := range settings {
		out = append(out, s.Env)
	}
	sort.Strings(out)
	return out
}
