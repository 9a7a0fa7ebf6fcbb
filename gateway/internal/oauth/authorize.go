package oauth

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
)

const (
	maxStateLen = 1024
	maxQueryLen = 8 << 10
)

// handleAuthorize serves GET /authorize. The client and its exact redirect URI are checked
// first: until both are known good, every problem is an error page and never a redirect.
// Afterwards, errors go back to the redirect URI with error, state and iss.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		s.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", "The authorization endpoint takes GET requests only.", "")
		return
	}
	if !s.allow(w, r, "authorize", s.limits.Authorize, true) {
		return
	}
	ctx := r.Context()
	if len(r.URL.RawQuery) > maxQueryLen {
		s.authorizePage(w, r, http.StatusRequestURITooLong, "Request too large", "The authorization request is too long.")
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.authorizePage(w, r, http.StatusBadRequest, "Invalid request", "The authorization request is not a valid query string.")
		return
	}
	if len(q["client_id"]) != 1 || q.Get("client_id") == "" {
		s.authorizePage(w, r, http.StatusBadRequest, "Invalid request", "The request must name exactly one client_id.")
		return
	}
	if len(q["redirect_uri"]) != 1 || q.Get("redirect_uri") == "" {
		s.authorizePage(w, r, http.StatusBadRequest, "Invalid request", "The request must carry exactly one redirect_uri.")
		return
	}
	clientID, redirectURI := q.Get("client_id"), q.Get("redirect_uri")
	client, err := s.clients.Get(ctx, clientID)
	if err != nil {
		if isNotFound(err) {
			s.log.InfoContext(ctx, "authorize: unknown client", "client_id", clip(clientID))
			s.authorizePage(w, r, http.StatusBadRequest, "Unknown application", "The application that sent you here is not registered with this server. Return to it and try connecting again.")
			return
		}
		s.log.ErrorContext(ctx, "authorize: client registry unavailable", "err", err)
		s.m.event("authorize", "unavailable")
		s.errorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable", "The sign-in service cannot look up the application right now. Try again in a minute.", "")
		return
	}
	if !client.RedirectAllowed(redirectURI) || !safeRedirectScheme(redirectURI) {
		s.log.InfoContext(ctx, "authorize: redirect_uri not registered", "client_id", clip(clientID))
		s.authorizePage(w, r, http.StatusBadRequest, "Invalid redirect address", "The application asked to send you back to an address it has not registered. For your safety the request was stopped.")
		return
	}

	// From here on the redirect URI is trusted: errors go back to the client.
	state := q.Get("state")
	if len(state) > maxStateLen {
		s.redirectError(w, r, redirectURI, "", "invalid_request", "state is too long")
		return
	}
	fail := func(code, desc string) { s.redirectError(w, r, redirectURI, state, code, desc) }
	if name := repeatedParam(q); name != "" && name != "resource" {
		fail("invalid_request", "parameter "+clip(name)+" is repeated")
		return
	}
	switch rt := q.Get("response_type"); rt {
	case "code":
	case "":
		fail("invalid_request", "response_type is required")
		return
	default:
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	}
	if !client.AllowsGrant(clients.GrantAuthorizationCode) {
		fail("unauthorized_client", "the client is not registered for the authorization_code grant")
		return
	}
	if q.Get("code_challenge_method") != "S256" {
		fail("invalid_request", "PKCE is required with code_challenge_method=S256")
		return
	}
	challenge := q.Get("code_challenge")
	if !validS256Challenge(challenge) {
		fail("invalid_request", "code_challenge must be a base64url SHA-256 value (43 characters)")
		return
	}
	resource, ok := s.resourceParam(q["resource"])
	if !ok {
		fail("invalid_target", "resource must be one of "+strings.Join(s.Resources(), ", "))
		return
	}
	scope, ok := parseScope(q.Get("scope"))
	if !ok {
		fail("invalid_scope", "scope may contain only "+ScopeTools+" and "+ScopeOffline)
		return
	}

	flowID := randomToken(32)
	binding := randomToken(32)
	p := pendingAuth{
		ClientID:    clientID,
		RedirectURI: redirectURI,
		Challenge:   challenge,
		Resource:    resource,
		Scope:       scope,
		State:       state,
		FlowCookie:  s.cookies.flow(flowID),
		Binding:     hashKey("oauth/flow-binding", binding),
		Created:     s.now().Unix(),
	}
	s.pruneFlowCookies(w, r)
	// The cookie is set at or after p.Created with Max-Age = StateTTL, and every record of the
	// flow expires at p.Created + StateTTL (flowTTL): the cookie outlives all of them.
	http.SetCookie(w, s.cookies.cookie(p.FlowCookie, binding, s.stateTTL))

	ring := s.keys.Ring()
	if s.preapp[clientID] || hasConsent(s.consentEntries(r, ring), consentKey(clientID, redirectURI), s.now(), s.consentTTL) {
		s.m.event("authorize", "consent_skipped")
		s.startUpstream(w, r, p, http.StatusFound)
		return
	}
	if err := s.putRecord(ctx, kindPending, flowID, p, s.flowTTL(&p)); err != nil {
		s.storeFailure(w, r, "authorize", err)
		return
	}
	s.m.event("authorize", "consent_required")
	noStore(w)
	http.Redirect(w, r, "/consent?request="+url.QueryEscape(flowID), http.StatusFound)
}

// maxFlowCookies bounds the flow cookies one browser carries: a client that opens
// /authorize over and over must not push the consent cookie out of the browser's per-site
// cookie limit. Past the bound, the old flows are abandoned (their cookies cleared).
const maxFlowCookies = 8

func (s *Server) pruneFlowCookies(w http.ResponseWriter, r *http.Request) {
	var names []string
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, s.cookies.flowPrefix()) {
			names = append(names, c.Name)
		}
	}
	if len(names) < maxFlowCookies {
		return
	}
	for _, n := range names {
		http.SetCookie(w, s.cookies.clear(n))
	}
}

// authorizePage answers an /authorize request that cannot be redirected back to the client.
func (s *Server) authorizePage(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	s.m.event("authorize", "error_page")
	s.errorPage(w, r, status, title, msg, "")
}

// startUpstream sets up a fresh upstream sign-in for p: our own random state (never the
// client's), nonce and PKCE verifier, stored single-use until the flow's deadline (what is
// left of StateTTL since /authorize, not a fresh StateTTL: the callback must not outlive the
// flow cookie), then redirects to the IdP.
func (s *Server) startUpstream(w http.ResponseWriter, r *http.Request, p pendingAuth, status int) {
	ttl := s.flowTTL(&p)
	if ttl == 0 {
		s.m.event("authorize", "expired")
		s.errorPage(w, r, http.StatusBadRequest, "Request expired", "This authorization request has expired. Return to the application and connect again.", "")
		return
	}
	state := randomToken(32)
	rec := upstreamState{pendingAuth: p, Nonce: randomToken(32), Verifier: randomToken(32)}
	if err := s.putRecord(r.Context(), kindState, state, rec, ttl); err != nil {
		s.storeFailure(w, r, "authorize", err)
		return
	}
	noStore(w)
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, s.up.AuthCodeURL(state, rec.Nonce, rec.Verifier), status)
}

// redirectError sends an authorization error back to the (validated) redirect URI with
// error, error_description, state and iss (RFC 6749 §4.1.2.1, RFC 9207).
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state, code, desc string) {
	s.m.event("authorize", "error_redirect")
	v := url.Values{"error": {code}, "iss": {s.issuer}}
	if desc != "" {
		v.Set("error_description", desc)
	}
	if state != "" {
		v.Set("state", state)
	}
	noStore(w)
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, appendQuery(redirectURI, v), http.StatusFound)
}

// storeFailure answers 503 when the store is down (fail closed).
func (s *Server) storeFailure(w http.ResponseWriter, r *http.Request, step string, err error) {
	s.log.ErrorContext(r.Context(), "oauth: store unavailable", "step", step, "err", err)
	s.m.event(step, "unavailable")
	s.errorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable", "The sign-in service cannot reach its data store. Try again in a minute.", "")
}

// resourceParam checks the RFC 8707 resource parameters: none means the origin; one must be
// an accepted resource (compared after lower-casing scheme and host and dropping a lone
// trailing slash); several are refused.
func (s *Server) resourceParam(vals []string) (string, bool) {
	switch len(vals) {
	case 0:
		return s.issuer, true
	case 1:
		return s.canonicalResource(vals[0])
	default:
		return "", false
	}
}

func (s *Server) canonicalResource(raw string) (string, bool) {
	if raw == "" {
		return s.issuer, true
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Contains(raw, "#") {
		return "", false
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	if u.Path == "/" {
		u.Path = ""
	}
	c := u.String()
	return c, s.resources[c]
}

// parseScope checks a requested scope and returns the granted one: mcp:tools always, plus
// offline_access when asked for.
func parseScope(raw string) (string, bool) {
	if len(raw) > 256 {
		return "", false
	}
	offline := false
	for tok := range strings.FieldsSeq(raw) {
		switch tok {
		case ScopeTools:
		case ScopeOffline:
			offline = true
		default:
			return "", false
		}
	}
	if offline {
		return ScopeTools + " " + ScopeOffline, true
	}
	return ScopeTools, true
}

// scopeSubset reports whether every scope token in req is in granted.
func scopeSubset(req, granted string) bool {
	g := strings.Fields(granted)
	for tok := range strings.FieldsSeq(req) {
		if !slices.Contains(g, tok) {
			return false
		}
	}
	return true
}

// safeRedirectScheme refuses schemes that would run code or read local data if a registry
// ever let one through (defence in depth; the registry refuses them at registration).
func safeRedirectScheme(uri string) bool {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" || u.Fragment != "" {
		return false
	}
	switch strings.ToLower(u.Scheme) {
	case "javascript", "data", "vbscript", "file", "blob", "about", "filesystem":
		return false
	}
	return !strings.ContainsAny(uri, "\r\n\t\x00 ")
}

// checkBinding reports whether the request carries the flow cookie of p.
func (s *Server) checkBinding(r *http.Request, p *pendingAuth) bool {
	c, err := r.Cookie(p.FlowCookie)
	if err != nil || c.Value == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(hashKey("oauth/flow-binding", c.Value)), []byte(p.Binding)) == 1
}

func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// clip shortens a client-supplied string for logs.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// isNotFound reports whether a registry error means "no such client".
func isNotFound(err error) bool {
	return errors.Is(err, clients.ErrNotFound) || errors.Is(err, clients.ErrMetadataDocument)
}
