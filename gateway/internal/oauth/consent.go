package oauth

import (
	"errors"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
)

const maxConsentForm = 4 << 10

// handleConsent serves GET /consent (the page) and POST /consent (the decision).
func (s *Server) handleConsent(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.consentPage(w, r)
	case http.MethodPost:
		s.consentDecision(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		s.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", "The consent page takes GET and POST requests only.", "")
	}
}

// consentView is the consent template's data.
type consentView struct {
	ServerName   string
	ClientName   string
	ClientID     string
	ClientURI    string
	RedirectHost string
	Unverified   bool
	KindNote     string
	Scopes       []scopeView
	RequestID    string
	CSRF         string
}

type scopeView struct{ Name, Description string }

var scopeDescriptions = map[string]string{
	ScopeTools:   "Use the tools of this MCP server on your behalf.",
	ScopeOffline: "Stay connected: keep access without asking you to sign in again.",
}

// consentPage renders the consent page of a pending authorization.
func (s *Server) consentPage(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	id := q.Get("request")
	if err != nil || len(q["request"]) != 1 || id == "" {
		s.consentError(w, r, http.StatusBadRequest, "Invalid request", "This consent page needs the link your application opened. Return to the application and connect again.")
		return
	}
	p, ok := s.loadPending(w, r, id, false)
	if !ok {
		return
	}
	if !s.checkBinding(r, p) {
		s.consentError(w, r, http.StatusForbidden, "Request started elsewhere", "This authorization request was started in another browser (or your browser blocked its cookie). Return to the application and connect again from this browser.")
		return
	}
	client, ok := s.pendingClient(w, r, p)
	if !ok {
		return
	}
	view := consentView{
		ServerName:   s.serverName,
		ClientName:   client.Name,
		ClientID:     client.ID,
		RedirectHost: redirectDisplay(p.RedirectURI),
		RequestID:    id,
		CSRF:         csrfToken(s.keys.Ring(), id),
	}
	if view.ClientName == "" {
		view.ClientName = "Unnamed application"
	}
	if u, err := url.Parse(client.URI); err == nil && u.Scheme == "https" && u.Host != "" {
		view.ClientURI = client.URI
	}
	switch client.Kind {
	case clients.KindDynamic:
		view.Unverified = true
		view.KindNote = "This application registered itself. Its name and website are what it says about itself; nobody has checked them."
	case clients.KindMetadataDocument:
		view.Unverified = true
		view.KindNote = "This application is identified by a metadata document at " + hostOf(client.ID) + ". Its name is what that document says; the administrator has not checked it."
	}
	for tok := range strings.FieldsSeq(p.Scope) {
		view.Scopes = append(view.Scopes, scopeView{Name: tok, Description: scopeDescriptions[tok]})
	}
	s.m.event("consent", "shown")
	s.render(w, r, http.StatusOK, "consent", view, s.consentFormAction(p.RedirectURI))
}

// consentDecision handles the consent form: Origin, Sec-Fetch-Site, CSRF, the flow cookie and
// the client are checked on the pending authorization, which is only then taken (single use),
// so that a refused POST does not use the request up; then Allow remembers the consent and
// goes to the IdP, Deny sends access_denied to the client.
func (s *Server) consentDecision(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if origin := r.Header.Get("Origin"); origin != "" && origin != s.issuer {
		s.consentReject(w, r, "cross-origin consent POST")
		return
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		s.consentReject(w, r, "cross-site consent POST")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		s.consentError(w, r, http.StatusUnsupportedMediaType, "Invalid request", "The consent form must be sent as a web form.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxConsentForm)
	if err := r.ParseForm(); err != nil {
		s.consentError(w, r, http.StatusBadRequest, "Invalid request", "The consent form could not be read.")
		return
	}
	f := r.PostForm
	id, action := f.Get("request"), f.Get("action")
	if repeatedParam(f) != "" || id == "" {
		s.consentError(w, r, http.StatusBadRequest, "Invalid request", "The consent form is incomplete.")
		return
	}
	ring := s.keys.Ring()
	if !checkCSRF(ring, id, f.Get("csrf")) {
		s.consentReject(w, r, "missing or invalid CSRF token")
		return
	}
	if action != "allow" && action != "deny" {
		s.consentError(w, r, http.StatusBadRequest, "Invalid request", "Choose Allow or Deny.")
		return
	}
	// Read, check, then take: a refused POST leaves the request for the real consent page.
	p, ok := s.loadPending(w, r, id, false)
	if !ok {
		return
	}
	if !s.checkBinding(r, p) {
		s.consentReject(w, r, "flow cookie missing or wrong")
		return
	}
	if _, ok := s.pendingClient(w, r, p); !ok {
		return
	}
	// Single use: of two answers that passed the checks at once, only the one whose GETDEL
	// finds the record goes on.
	if p, ok = s.loadPending(w, r, id, true); !ok {
		return
	}
	if action == "deny" {
		s.m.event("consent", "deny")
		s.log.InfoContext(ctx, "consent denied", "client_id", clip(p.ClientID))
		http.SetCookie(w, s.cookies.clear(p.FlowCookie))
		v := url.Values{"error": {"access_denied"}, "error_description": {"the user denied access"}, "iss": {s.issuer}}
		if p.State != "" {
			v.Set("state", p.State)
		}
		noStore(w)
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, appendQuery(p.RedirectURI, v), http.StatusSeeOther)
		return
	}
	now := s.now()
	entries := addConsent(s.consentEntries(r, ring), consentKey(p.ClientID, p.RedirectURI), now, s.consentTTL)
	http.SetCookie(w, s.cookies.cookie(s.cookies.consent(), encodeConsent(ring, entries), s.consentTTL))
	s.m.event("consent", "allow")
	s.log.InfoContext(ctx, "consent given", "client_id", clip(p.ClientID))
	s.startUpstream(w, r, *p, http.StatusSeeOther)
}

// pendingClient re-checks that the pending authorization's client still exists and still
// owns the redirect URI (a registration may have changed since /authorize).
func (s *Server) pendingClient(w http.ResponseWriter, r *http.Request, p *pendingAuth) (*clients.Client, bool) {
	client, err := s.clients.Get(r.Context(), p.ClientID)
	if err != nil {
		if isNotFound(err) {
			s.consentError(w, r, http.StatusBadRequest, "Unknown application", "The application is no longer registered. Return to it and connect again.")
			return nil, false
		}
		s.storeFailure(w, r, "consent", err)
		return nil, false
	}
	if !client.RedirectAllowed(p.RedirectURI) {
		s.consentError(w, r, http.StatusBadRequest, "Invalid redirect address", "The application no longer owns the address it asked to return to.")
		return nil, false
	}
	return client, true
}

func (s *Server) consentError(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	s.m.event("consent", "error")
	s.errorPage(w, r, status, title, msg, "")
}

func (s *Server) consentReject(w http.ResponseWriter, r *http.Request, why string) {
	s.m.event("consent", "rejected")
	s.log.WarnContext(r.Context(), "consent POST rejected", "reason", why, "ip", s.clientIP(r))
	s.errorPage(w, r, http.StatusForbidden, "Request refused", "This consent answer did not come from the consent page of this server, so it was ignored. Return to the application and connect again.", "")
}

// consentFormAction is the CSP form-action of the consent page: the browser checks it on the
// form's target and on every redirect that follows (to the IdP, and, when the IdP signs the
// user in silently, back to our callback and on to the client's redirect URI).
func (s *Server) consentFormAction(redirectURI string) string {
	srcs := []string{"'self'"}
	var idp string
	if o, ok := s.up.(interface{ Origin() string }); ok {
		idp = originOf(o.Origin())
	} else {
		idp = originOf(s.up.AuthCodeURL("probe", "probe", "probe"))
	}
	if idp != "" && idp != s.issuer {
		srcs = append(srcs, idp)
	}
	if rs := cspSource(redirectURI); rs != "" {
		srcs = append(srcs, rs)
	}
	return strings.Join(srcs, " ")
}

var (
	cspSchemeRE = regexp.MustCompile(`^[a-z][a-z0-9+.-]*$`)
	cspHostRE   = regexp.MustCompile(`^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?$`)
)

// originOf returns scheme://host[:port] of an http(s) URL, or "".
func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return cspSource(u.Scheme + "://" + u.Host)
}

// cspSource turns a validated redirect URI into a CSP source expression: its origin for
// http(s), its scheme ("com.example.app:") for a private-use scheme. Anything that does not
// match the strict grammar yields "" (the browser then blocks the redirect: fail closed).
func cspSource(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if !cspSchemeRE.MatchString(scheme) {
		return ""
	}
	if scheme == "http" || scheme == "https" {
		if !cspHostRE.MatchString(host) {
			return ""
		}
		return scheme + "://" + host
	}
	return scheme + ":"
}

// redirectDisplay is what the consent page shows of a redirect URI: the host (with port) for
// http(s), else the scheme.
func redirectDisplay(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "an unknown address"
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		if isLoopbackHost(u.Hostname()) {
			return u.Host + " (an application on this computer)"
		}
		return u.Host
	}
	return u.Scheme + ": (an application on this device)"
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "an unknown address"
	}
	return u.Host
}

// loadPending reads the pending authorization id (taking it when take is true) and answers
// the error page itself when it has expired, was already answered, or the store fails.
func (s *Server) loadPending(w http.ResponseWriter, r *http.Request, id string, take bool) (*pendingAuth, bool) {
	var p pendingAuth
	if err := s.getRecord(r.Context(), kindPending, id, take, &p); err != nil {
		if errors.Is(err, errRecordNotFound) {
			s.consentError(w, r, http.StatusBadRequest, "Request expired", "This authorization request has expired or was already answered. Return to the application and connect again.")
			return nil, false
		}
		s.storeFailure(w, r, "consent", err)
		return nil, false
	}
	return &p, true
}
