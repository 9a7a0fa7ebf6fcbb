package mcpproxy

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/telemetry"
)

// Call is one authorised MCP request as it leaves the chain: who made it and what it is. The
// handler after the chain fills Method and Tool (for the access log) and Outcome.
type Call struct {
	// Endpoint is the public endpoint.
	Endpoint Endpoint
	// Grant is the verified grant (nil only inside the chain, before step 3).
	Grant *grants.Grant
	// RequestID is the request id (also in the X-Request-Id response header).
	RequestID string
	// Method and Tool are the JSON-RPC method and tool/resource/prompt name, when known.
	Method, Tool string
	// Outcome is a short machine word for the access log when the handler ended the request
	// itself (e.g. "backend_unreachable").
	Outcome string
	start   time.Time
}

// Handler serves an authorised MCP request.
type Handler interface {
	ServeMCP(w http.ResponseWriter, r *http.Request, c *Call)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w http.ResponseWriter, r *http.Request, c *Call)

// ServeMCP calls f.
func (f HandlerFunc) ServeMCP(w http.ResponseWriter, r *http.Request, c *Call) { f(w, r, c) }

// CORS header values.
const (
	corsAllowMethods  = "GET, POST, DELETE, OPTIONS"
	corsExposeHeaders = "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate, Retry-After, RateLimit, RateLimit-Policy"
	corsAllowHeaders  = "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name"
	corsMaxAge        = "600"
)

// Chain runs the policy chain for ep — step 0 Host, Origin and CORS; 1 bearer token present;
// 2+3 token opens and its grant exists and is good for ep.Resource; 4 rate limit per user and
// client — and then next. It writes the access log line and the request metrics for every
// request, including those the chain refuses.
func (p *Proxy) Chain(ep Endpoint, next Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &Call{Endpoint: ep, start: time.Now()}
		c.RequestID = telemetry.RequestIDFor(r)
		sw := telemetry.NewStatusWriter(w)
		sw.Header()[telemetry.RequestIDHeader] = []string{c.RequestID}
		// Deferred: ReverseProxy aborts a broken stream with panic(http.ErrAbortHandler).
		defer p.finish(sw, r, c)
		p.chain(sw, r, c, next)
	})
}

func (p *Proxy) chain(w http.ResponseWriter, r *http.Request, c *Call, next Handler) {
	ep := c.Endpoint
	// Step 0: Host, Origin, CORS.
	if !p.hostOK(r.Host) {
		c.Outcome = "bad_host"
		writeRPCError(w, http.StatusForbidden, codeForbidden, "Forbidden: unexpected Host")
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if _, ok := p.origins[strings.ToLower(origin)]; !ok {
			c.Outcome = "bad_origin"
			writeRPCError(w, http.StatusForbidden, codeForbidden, "Forbidden: origin not allowed")
			return
		}
		h := w.Header()
		h["Access-Control-Allow-Origin"] = []string{origin}
		h["Vary"] = append(h["Vary"], "Origin")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			c.Outcome = "preflight"
			p.preflight(w, r)
			return
		}
		h["Access-Control-Expose-Headers"] = []string{corsExposeHeaders}
	}
	// Step 1: a bearer token.
	token, ok := bearer(r.Header)
	if !ok {
		c.Outcome = "no_token"
		w.Header()["Www-Authenticate"] = ep.challengeMissing
		writeJSON(w, http.StatusUnauthorized, bodyNoToken)
		return
	}
	// Steps 2 and 3: the token opens, its grant exists and is good for this endpoint.
	// The verifier bounds its own store reads (grants.Options.LookupTimeout): a cache hit,
	// the common case, needs no timer.
	g, err := p.cfg.Verifier.Verify(r.Context(), token, ep.Resource)
	if err != nil {
		if errors.Is(err, grants.ErrInvalidToken) {
			c.Outcome = "invalid_token"
			w.Header()["Www-Authenticate"] = ep.challengeInvalid
			writeJSON(w, http.StatusUnauthorized, bodyInvalidToken)
			return
		}
		c.Outcome = "store_unavailable"
		p.metrics.unavailable.Inc()
		if !errors.Is(err, grants.ErrUnavailable) {
			p.log.LogAttrs(r.Context(), slog.LevelError, "grant verification failed",
				slog.String("request_id", c.RequestID), slog.String("err", err.Error()))
		}
		w.Header()["Retry-After"] = retryAfter1
		writeRPCError(w, http.StatusServiceUnavailable, codeUnavailable, "Service temporarily unavailable, retry shortly")
		return
	}
	c.Grant = g
	// Step 4: rate limit per user and client on this replica.
	if wait, ok := p.limiter.allow(g.User.ID(), g.ClientID, time.Now()); !ok {
		c.Outcome = "rate_limited"
		p.metrics.rateLimited.Inc()
		secs := max(1, int((wait+time.Second-1)/time.Second))
		h := w.Header()
		h["Retry-After"] = []string{strconv.Itoa(secs)}
		h["Ratelimit-Policy"] = p.limiter.policy
		h["Ratelimit"] = []string{`"mcp";r=0;t=` + strconv.Itoa(secs)}
		writeRPCError(w, http.StatusTooManyRequests, codeRateLimited, "Too many requests, retry later")
		return
	}
	next.ServeMCP(w, r, c)
}

// preflight answers a CORS preflight for an allowed origin without authentication.
func (p *Proxy) preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Access-Control-Allow-Methods"] = []string{corsAllowMethods}
	allow := corsAllowHeaders
	// Echo requested Mcp-Param-* headers (a list cannot hold a wildcard that covers
	// Authorization, and the parameter names are chosen by tool schemas).
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		var extra []string
		for name := range strings.SplitSeq(req, ",") {
			name = strings.TrimSpace(name)
			if len(name) > len("mcp-param-") && strings.EqualFold(name[:len("mcp-param-")], "mcp-param-") && isToken(name) {
				extra = append(extra, name)
			}
		}
		if len(extra) > 0 {
			allow += ", " + strings.Join(extra, ", ")
		}
	}
	h["Access-Control-Allow-Headers"] = []string{allow}
	h["Access-Control-Max-Age"] = []string{corsMaxAge}
	h["Vary"] = append(h["Vary"], "Access-Control-Request-Method", "Access-Control-Request-Headers")
	w.WriteHeader(http.StatusNoContent)
}

// bearer extracts the token of a single "Authorization: Bearer <token>" header.
func bearer(h http.Header) (string, bool) {
	v := h["Authorization"]
	if len(v) != 1 {
		return "", false
	}
	a := v[0]
	if len(a) < 8 || !strings.EqualFold(a[:7], "bearer ") {
		return "", false
	}
	tok := strings.TrimSpace(a[7:])
	return tok, tok != ""
}

// isToken reports whether s is an RFC 9110 token (a valid header name).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// finish writes the access log line and records metrics.
func (p *Proxy) finish(sw *telemetry.StatusWriter, r *http.Request, c *Call) {
	d := time.Since(c.start)
	status := sw.Status()
	p.metrics.observe(c.Endpoint.Name, r.Method, status, d)
	h, ctx := p.log.Handler(), r.Context()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("request_id", c.RequestID),
		slog.String("endpoint", c.Endpoint.Name),
		slog.String("http_method", r.Method),
		slog.Int("status", status),
		slog.Float64("latency_ms", float64(d.Microseconds())/1000),
	)
	if c.Grant != nil {
		attrs = append(attrs,
			slog.String("client_id", c.Grant.ClientID),
			slog.String("grant", c.Grant.LogID()),
			slog.String("user_oid", c.Grant.User.ID()))
	}
	if c.Method != "" {
		attrs = append(attrs, slog.String("mcp_method", c.Method))
	}
	if c.Tool != "" {
		attrs = append(attrs, slog.String("mcp_name", c.Tool))
	}
	if c.Outcome != "" {
		attrs = append(attrs, slog.String("outcome", c.Outcome))
	}
	if p.cfg.ReplicaID != "" {
		attrs = append(attrs, slog.String("replica", p.cfg.ReplicaID))
	}
	// The record is built here rather than with Logger.LogAttrs, which would look up the
	// caller's program counter (runtime.Callers) for a source location nobody prints.
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, "mcp request", 0)
	rec.AddAttrs(attrs...)
	_ = h.Handle(ctx, rec)
}
