package oauth

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/upstream"
)

// handleCallback serves GET /oauth-callback, where the IdP sends the browser back. Our state
// is taken (single use) and checked against the browser's flow cookie; an IdP error becomes a
// readable page with a way back to the client; a code is exchanged upstream and our own
// authorization code goes to the client with state and iss.
func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		s.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", "The callback takes GET requests only.", "")
		return
	}
	ctx := r.Context()
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil || len(r.URL.RawQuery) > maxQueryLen || repeatedParam(q) != "" {
		s.callbackPage(w, r, "invalid_request", http.StatusBadRequest, "Invalid sign-in response", "The identity provider's answer could not be read. Return to the application and connect again.", "")
		return
	}
	state := q.Get("state")
	if state == "" {
		s.callbackPage(w, r, "missing_state", http.StatusBadRequest, "Invalid sign-in response", "The identity provider's answer has no state. Return to the application and connect again.", "")
		return
	}
	var rec upstreamState
	if err := s.getRecord(ctx, kindState, state, true, &rec); err != nil {
		if errors.Is(err, errRecordNotFound) {
			s.callbackPage(w, r, "unknown_state", http.StatusBadRequest, "Sign-in link expired", "This sign-in has expired or was already completed. Return to the application and connect again.", "")
			return
		}
		s.storeFailure(w, r, "callback", err)
		return
	}
	if !s.checkBinding(r, &rec.pendingAuth) {
		s.log.WarnContext(ctx, "callback: flow cookie missing or wrong", "client_id", clip(rec.ClientID))
		s.callbackPage(w, r, "browser_mismatch", http.StatusForbidden, "Sign-in started elsewhere", "This sign-in was started in another browser (or your browser blocked its cookie), so it was stopped. Return to the application and connect again from this browser.", "")
		return
	}
	http.SetCookie(w, s.cookies.clear(rec.FlowCookie))

	if upErr := upstream.FromCallback(q); upErr != nil {
		s.upstreamFailure(w, r, &rec.pendingAuth, upErr)
		return
	}
	code := q.Get("code")
	if code == "" {
		s.upstreamFailure(w, r, &rec.pendingAuth, &upstream.Error{Code: "invalid_request", Description: "the callback has neither code nor error"})
		return
	}
	user, tokens, err := s.up.Exchange(ctx, code, rec.Verifier, rec.Nonce)
	if err != nil {
		var upErr *upstream.Error
		if !errors.As(err, &upErr) {
			upErr = &upstream.Error{Code: "server_error", Description: "the sign-in could not be completed"}
		}
		s.log.WarnContext(ctx, "callback: upstream exchange failed", "client_id", clip(rec.ClientID), "err", err)
		s.upstreamFailure(w, r, &rec.pendingAuth, upErr)
		return
	}
	if s.admit != nil {
		if err := s.admit(ctx, user); err != nil {
			s.refusePage(w, r, &rec.pendingAuth, user, err)
			return
		}
	}

	ourCode := randomToken(32)
	cr := codeRecord{
		ClientID:    rec.ClientID,
		RedirectURI: rec.RedirectURI,
		Challenge:   rec.Challenge,
		Resource:    rec.Resource,
		Scope:       rec.Scope,
		User:        user,
		Tokens:      tokens,
		Issued:      s.now().Unix(),
	}
	if err := s.putRecord(ctx, kindCode, ourCode, cr, s.codeTTL); err != nil {
		s.storeFailure(w, r, "callback", err)
		return
	}
	s.m.event("callback", "ok")
	s.log.InfoContext(ctx, "authorization code issued", "client_id", clip(rec.ClientID), "user", user.ID(), "resource", rec.Resource)
	v := url.Values{"code": {ourCode}, "iss": {s.issuer}}
	if rec.State != "" {
		v.Set("state", rec.State)
	}
	noStore(w)
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, appendQuery(rec.RedirectURI, v), http.StatusFound)
}

// upstreamFailure handles an IdP error after the state was validated. A user who cancelled
// goes straight back to the client with access_denied; every other error gets a readable page
// (the upstream.Explain text: cause, and who must do what) with a link that returns the mapped
// OAuth error (upstream.Error.ClientError) to the client.
func (s *Server) upstreamFailure(w http.ResponseWriter, r *http.Request, p *pendingAuth, e *upstream.Error) {
	code := e.ClientError()
	s.m.event("callback", "error_"+code)
	s.m.upstreamError("callback", e)
	s.log.WarnContext(r.Context(), "callback: upstream error", "client_id", clip(p.ClientID), "upstream_error", clip(e.Code),
		"aadsts", e.AADSTS, "upstream_class", string(e.Class()), "client_error", code)
	v := url.Values{"error": {code}, "iss": {s.issuer}}
	if code == "access_denied" {
		v.Set("error_description", "the user or the identity provider refused the sign-in")
	} else {
		v.Set("error_description", "the upstream sign-in failed")
	}
	if p.State != "" {
		v.Set("state", p.State)
	}
	back := appendQuery(p.RedirectURI, v)
	if e.Cancelled() {
		noStore(w)
		http.Redirect(w, r, back, http.StatusFound)
		return
	}
	title, hint := upstream.Explain(e)
	msg := "The identity provider reported: " + e.Code
	if e.AADSTS != "" {
		msg += " (" + e.AADSTS + ")"
	}
	msg += "."
	s.errorPageHint(w, r, e.Status(), title, msg, hint, back)
}

// refusePage answers a signed-in user whom Config.Admit refused: no code is issued and the
// upstream tokens are dropped; the page says why, and its link returns access_denied.
func (s *Server) refusePage(w http.ResponseWriter, r *http.Request, p *pendingAuth, user identity.User, err error) {
	reason := refusalReason(err)
	s.m.event("callback", "refused")
	s.m.refused("callback", reason)
	s.log.WarnContext(r.Context(), "callback: user refused by policy", "client_id", clip(p.ClientID), "user", user.ID(),
		"tid", user.TenantID, "reason", reason, "err", err)
	v := url.Values{"error": {"access_denied"}, "error_description": {"the user is not allowed to use this server"}, "iss": {s.issuer}}
	if p.State != "" {
		v.Set("state", p.State)
	}
	title, hint := "You are not allowed to use this server", "Ask the administrator of this gateway for access."
	var x interface{ Explain() (string, string) }
	if errors.As(err, &x) {
		title, hint = x.Explain()
	}
	msg := "You signed in as " + displayName(user) + ", but this gateway's access policy does not admit that account."
	s.errorPageHint(w, r, http.StatusForbidden, title, msg, hint, appendQuery(p.RedirectURI, v))
}

// refusalReason is the bounded label of an Admit error ("policy" unless it says otherwise).
func refusalReason(err error) string {
	var x interface{ Reason() string }
	if errors.As(err, &x) {
		if r := x.Reason(); r != "" && len(r) <= 32 {
			return r
		}
	}
	return "policy"
}

// displayName is how the refusal page names the account.
func displayName(u identity.User) string {
	switch {
	case u.Username != "":
		return clip(u.Username)
	case u.Email != "":
		return clip(u.Email)
	case u.Name != "":
		return clip(u.Name)
	}
	return "this account"
}

// callbackPage answers a callback that cannot be tied to a client (no valid state).
func (s *Server) callbackPage(w http.ResponseWriter, r *http.Request, outcome string, status int, title, msg, hint string) {
	s.m.event("callback", outcome)
	s.errorPageHint(w, r, status, title, msg, hint, "")
}
