package oauth

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/mcpgate/mcpgate/gateway/internal/upstream"
)

const maxTokenForm = 16 << 10

// tokenResponse is the RFC 6749 §5.1 success body.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// tokenError is an RFC 6749 §5.2 error with its status.
type tokenError struct {
	status int
	code   string
	desc   string
	basic  bool // client authentication used HTTP Basic: answer WWW-Authenticate
}

func (e *tokenError) Error() string { return e.code + ": " + e.desc }

func errInvalidRequest(desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: "invalid_request", desc: desc}
}

func errInvalidGrant(desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: "invalid_grant", desc: desc}
}

var errUnavailable = &tokenError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "the service is temporarily unavailable; retry later"}

// writeTokenError writes a token or revocation endpoint error.
func writeTokenError(w http.ResponseWriter, e *tokenError) {
	if e.status == http.StatusUnauthorized && e.basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="mcpgate", charset="UTF-8"`)
	}
	writeOAuthError(w, e.status, e.code, e.desc)
}

// readForm reads a size-limited application/x-www-form-urlencoded body (never the query
// string) and refuses repeated parameters.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *tokenError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, errInvalidRequest("the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenForm)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &tokenError{status: http.StatusRequestEntityTooLarge, code: "invalid_request", desc: "the body is too large"}
		}
		return nil, errInvalidRequest("the body is not a valid form")
	}
	if name := repeatedParam(r.PostForm); name != "" {
		return nil, errInvalidRequest("parameter " + clip(name) + " is repeated")
	}
	return r.PostForm, nil
}

// authenticateClient applies RFC 6749 §2.3: HTTP Basic (client_secret_basic), client_secret
// in the body (client_secret_post), or client_id alone (none, public clients).
func (s *Server) authenticateClient(ctx context.Context, r *http.Request, f url.Values) (*clients.Client, *tokenError) {
	var id, secret, method string
	basic := false
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Basic") {
			return nil, &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "unsupported client authentication scheme"}
		}
		basic = true
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return nil, &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "malformed Basic credentials", basic: true}
		}
		u, p, ok := strings.Cut(string(raw), ":")
		if !ok {
			return nil, &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "malformed Basic credentials", basic: true}
		}
		// RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
		var err1, err2 error
		id, err1 = url.QueryUnescape(u)
		secret, err2 = url.QueryUnescape(p)
		if err1 != nil || err2 != nil {
			return nil, &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "malformed Basic credentials", basic: true}
		}
		if f.Has("client_secret") {
			return nil, errInvalidRequest("use one client authentication method, not several")
		}
		if bodyID := f.Get("client_id"); bodyID != "" && bodyID != id {
			return nil, &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client_id does not match the credentials", basic: true}
		}
		method = clients.AuthClientSecretBasic
	} else {
		id, secret = f.Get("client_id"), f.Get("client_secret")
		method = clients.AuthNone
		if f.Has("client_secret") {
			method = clients.AuthClientSecretPost
		}
	}
	if id == "" {
		return nil, &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client authentication is required", basic: basic}
	}
	c, err := s.clients.Authenticate(ctx, id, secret, method)
	if err != nil {
		if errors.Is(err, clients.ErrInvalidClient) || isNotFound(err) {
			s.log.InfoContext(ctx, "client authentication failed", "client_id", clip(id), "method", method)
			return nil, &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client authentication failed", basic: basic}
		}
		s.log.ErrorContext(ctx, "client registry unavailable", "err", err)
		return nil, errUnavailable
	}
	return c, nil
}

// handleToken serves POST /token.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if !corsPost(w, r) {
		return
	}
	if !s.allow(w, r, "token", s.limits.Token, false) {
		return
	}
	ctx := r.Context()
	f, terr := readForm(w, r)
	if terr != nil {
		s.m.event("token", terr.code)
		writeTokenError(w, terr)
		return
	}
	gt := f.Get("grant_type")
	step := "token"
	if gt == "refresh_token" {
		step = "refresh"
	}
	client, terr := s.authenticateClient(ctx, r, f)
	if terr == nil {
		var resp *tokenResponse
		switch gt {
		case "authorization_code":
			resp, terr = s.exchangeCode(ctx, client, f)
		case "refresh_token":
			resp, terr = s.refresh(ctx, client, f)
		case "":
			terr = errInvalidRequest("grant_type is required")
		default:
			terr = &tokenError{status: http.StatusBadRequest, code: "unsupported_grant_type", desc: "grant_type must be authorization_code or refresh_token"}
		}
		if terr == nil {
			s.m.event(step, "ok")
			if err := s.clients.Touch(ctx, client.ID); err != nil {
				s.log.WarnContext(ctx, "client touch failed", "client_id", clip(client.ID), "err", err)
			}
			writeJSON(w, http.StatusOK, resp)
			return
		}
	}
	s.m.event(step, terr.code)
	writeTokenError(w, terr)
}

// exchangeCode redeems an authorization code (RFC 6749 §4.1.3 with PKCE, RFC 7636 §4.6).
func (s *Server) exchangeCode(ctx context.Context, client *clients.Client, f url.Values) (*tokenResponse, *tokenError) {
	if !client.AllowsGrant(clients.GrantAuthorizationCode) {
		return nil, &tokenError{status: http.StatusBadRequest, code: "unauthorized_client", desc: "the client is not registered for the authorization_code grant"}
	}
	code := f.Get("code")
	if code == "" {
		return nil, errInvalidRequest("code is required")
	}
	verifier := f.Get("code_verifier")
	if verifier == "" {
		return nil, errInvalidRequest("code_verifier is required (PKCE)")
	}
	if f.Get("redirect_uri") == "" {
		return nil, errInvalidRequest("redirect_uri is required")
	}
	var rec codeRecord
	if err := s.getRecord(ctx, kindCode, code, true, &rec); err != nil {
		if errors.Is(err, errRecordNotFound) {
			s.codeReplay(ctx, code, client.ID)
			return nil, errInvalidGrant("the authorization code is invalid, expired or already used")
		}
		s.log.ErrorContext(ctx, "token: store unavailable", "err", err)
		return nil, errUnavailable
	}
	// The code is burnt from here on if the client's own checks fail; only a failure to issue
	// the grant (our side, answered 503 "retry later") gives it back.
	if subtle.ConstantTimeCompare([]byte(rec.ClientID), []byte(client.ID)) != 1 {
		s.log.WarnContext(ctx, "token: code presented by another client", "client_id", clip(client.ID))
		return nil, errInvalidGrant("the authorization code was issued to another client")
	}
	if f.Get("redirect_uri") != rec.RedirectURI {
		return nil, errInvalidGrant("redirect_uri does not match the authorization request")
	}
	if !validPKCEValue(verifier) || subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(rec.Challenge)) != 1 {
		return nil, errInvalidGrant("code_verifier does not match the code_challenge")
	}
	if res, ok := f["resource"]; ok {
		if r, ok := s.resourceParam(res); !ok || r != rec.Resource {
			return nil, &tokenError{status: http.StatusBadRequest, code: "invalid_target", desc: "resource does not match the authorization request"}
		}
	}
	if sc := f.Get("scope"); sc != "" && !scopeSubset(sc, rec.Scope) {
		return nil, &tokenError{status: http.StatusBadRequest, code: "invalid_scope", desc: "scope exceeds the authorized scope"}
	}
	ts, err := s.grants.Issue(ctx, grants.Grant{
		ClientID: client.ID,
		User:     rec.User,
		Resource: rec.Resource,
		Scope:    rec.Scope,
	}, rec.Tokens)
	if err != nil {
		s.log.ErrorContext(ctx, "token: issue grant failed", "client_id", clip(client.ID), "err", err)
		s.restoreCode(ctx, code, &rec)
		return nil, errUnavailable
	}
	if err := s.st.Set(ctx, store.Key("oauth", kindUsed, recordID(kindCode, code)), []byte(ts.GrantID), usedCodeTTL); err != nil {
		s.log.WarnContext(ctx, "token: could not record the redeemed code", "err", err)
	}
	s.log.InfoContext(ctx, "tokens issued", "client_id", clip(client.ID), "user", rec.User.ID(), "resource", rec.Resource)
	return s.tokenResponse(client, ts), nil
}

// restoreCodeTimeout bounds the write that gives back a code after a failed issue.
const restoreCodeTimeout = 2 * time.Second

// restoreCode puts back an authorization code taken by a request that passed every check but
// could not be answered because the grant could not be issued (a failure on our side, such as
// the store, answered 503 temporarily_unavailable), so that the client's identical retry,
// which the 503 invites, succeeds. The code keeps its original deadline (Issued + CodeTTL): it
// is written with what is left of its lifetime, and not at all when (almost) nothing is left.
// The write runs even if the client has gone.
func (s *Server) restoreCode(ctx context.Context, code string, rec *codeRecord) {
	ttl := s.remainingTTL(rec.Issued, s.codeTTL)
	if ttl == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restoreCodeTimeout)
	defer cancel()
	if err := s.putRecord(ctx, kindCode, code, rec, ttl); err != nil {
		s.log.ErrorContext(ctx, "token: could not give back the authorization code after a failed issue", "client_id", clip(rec.ClientID), "err", err)
		return
	}
	s.m.event("token", "code_restored")
}

// codeReplay revokes the grant issued for a code presented a second time (RFC 6749 §4.1.2:
// the authorization server SHOULD revoke all tokens previously issued based on that code).
func (s *Server) codeReplay(ctx context.Context, code, clientID string) {
	key := store.Key("oauth", kindUsed, recordID(kindCode, code))
	gid, err := s.st.Get(ctx, key)
	if err != nil || len(gid) == 0 {
		return
	}
	s.m.event("token", "code_replay")
	s.log.WarnContext(ctx, "token: authorization code replayed; revoking its grant", "client_id", clip(clientID))
	if err := s.grants.Revoke(ctx, string(gid)); err != nil {
		s.log.ErrorContext(ctx, "token: revoke after code replay failed", "err", err)
	}
}

// refresh handles the refresh_token grant: rotation and upstream refresh are the grants
// manager's; a user the IdP no longer accepts makes it invalid_grant.
func (s *Server) refresh(ctx context.Context, client *clients.Client, f url.Values) (*tokenResponse, *tokenError) {
	if !client.AllowsGrant(clients.GrantRefreshToken) {
		return nil, &tokenError{status: http.StatusBadRequest, code: "unauthorized_client", desc: "the client is not registered for the refresh_token grant"}
	}
	rt := f.Get("refresh_token")
	if rt == "" {
		return nil, errInvalidRequest("refresh_token is required")
	}
	res, hasResource := f["resource"]
	var resource string
	if hasResource {
		var ok bool
		if resource, ok = s.resourceParam(res); !ok {
			return nil, &tokenError{status: http.StatusBadRequest, code: "invalid_target", desc: "resource is not served here"}
		}
	}
	// RFC 6749 §6: a refresh must not widen the grant. Every known scope is within it:
	// mcp:tools is always granted, and offline_access is what holding a refresh token means
	// (they are issued to every client registered for the refresh_token grant). So a known
	// scope is accepted and the response carries the grant's scope; anything else is refused.
	// A scope added later that is granted selectively needs a check against the grant here,
	// before the rotation, as for the resource.
	if sc := f.Get("scope"); sc != "" {
		if _, ok := parseScope(sc); !ok {
			return nil, &tokenError{status: http.StatusBadRequest, code: "invalid_scope", desc: "unknown scope"}
		}
	}
	// The resource is checked against the grant before anything changes: a refused request
	// must not consume the refresh token (a later use would be a replay that ends the session).
	refreshUpstream := func(ctx context.Context, g *grants.Grant, up identity.Tokens) (identity.User, identity.Tokens, error) {
		if hasResource && resource != g.Resource {
			return identity.User{}, identity.Tokens{}, errResourceMismatch
		}
		return s.refreshUpstream(ctx, g, up)
	}
	ts, g, err := s.grants.Refresh(ctx, rt, client.ID, refreshUpstream)
	// The second case: a retry within the grace period returns the stored token set without
	// calling refreshUpstream (and without changing anything), so it is checked here.
	if errors.Is(err, errResourceMismatch) || (err == nil && hasResource && resource != g.Resource) {
		return nil, &tokenError{status: http.StatusBadRequest, code: "invalid_target", desc: "resource does not match the grant"}
	}
	if err != nil {
		var upErr *upstream.Error
		var refused *refusedError
		if errors.As(err, &upErr) {
			s.m.upstreamError("refresh", upErr)
		}
		switch {
		case errors.Is(err, grants.ErrInvalidGrant), errors.Is(err, grants.ErrInvalidToken):
			return nil, errInvalidGrant("the refresh token is invalid, expired, revoked or already used")
		case errors.As(err, &refused):
			// The policy no longer admits the user (role or group removed, …): end the session.
			reason := refusalReason(refused.err)
			s.m.refused("refresh", reason)
			s.log.InfoContext(ctx, "refresh: user refused by policy; revoking the grant", "client_id", clip(client.ID), "reason", reason, "err", refused.err)
			if rerr := s.grants.RevokeToken(ctx, rt, client.ID); rerr != nil && !errors.Is(rerr, grants.ErrInvalidToken) {
				s.log.ErrorContext(ctx, "refresh: revoke after policy refusal failed", "err", rerr)
			}
			return nil, errInvalidGrant("the user is no longer allowed to use this server")
		case errors.As(err, &upErr) && !upErr.Temporary():
			// The IdP no longer accepts the user (disabled, password reset, consent revoked):
			// end the session, so that its access tokens stop working too.
			s.log.InfoContext(ctx, "refresh: upstream refused; revoking the grant", "client_id", clip(client.ID), "upstream_error", clip(upErr.Code), "aadsts", upErr.AADSTS)
			if rerr := s.grants.RevokeToken(ctx, rt, client.ID); rerr != nil && !errors.Is(rerr, grants.ErrInvalidToken) {
				s.log.ErrorContext(ctx, "refresh: revoke after upstream refusal failed", "err", rerr)
			}
			return nil, errInvalidGrant("the identity provider no longer accepts this sign-in")
		default:
			s.log.ErrorContext(ctx, "refresh failed", "client_id", clip(client.ID), "err", err)
			return nil, errUnavailable
		}
	}
	return s.tokenResponse(client, ts), nil
}

// errResourceMismatch refuses a refresh whose resource is not the grant's, before rotation.
var errResourceMismatch = errors.New("oauth: refresh: resource does not match the grant")

// refreshUpstream is the grants.RefreshFunc: it refreshes the upstream tokens, so that a user
// disabled at the IdP loses access at the next refresh.
// With Config.Admit set, the refreshed identity is checked again: a refusal is a *refusedError.
func (s *Server) refreshUpstream(ctx context.Context, _ *grants.Grant, up identity.Tokens) (identity.User, identity.Tokens, error) {
	user, next, err := s.up.Refresh(ctx, up)
	if err != nil || s.admit == nil {
		return user, next, err
	}
	if err := s.admit(ctx, user); err != nil {
		return identity.User{}, identity.Tokens{}, &refusedError{err: err}
	}
	return user, next, nil
}

// refusedError is a refresh refused by Config.Admit.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return "refused by policy: " + e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

func (s *Server) tokenResponse(client *clients.Client, ts *grants.TokenSet) *tokenResponse {
	resp := &tokenResponse{
		AccessToken: ts.AccessToken,
		TokenType:   "Bearer",
		ExpiresIn:   ts.ExpiresIn,
		Scope:       ts.Scope,
	}
	if client.AllowsGrant(clients.GrantRefreshToken) {
		resp.RefreshToken = ts.RefreshToken
	}
	return resp
}

// handleRevoke serves POST /revoke (RFC 7009): after client authentication, the grant behind
// the token is revoked; unknown tokens get 200 too.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if !corsPost(w, r) {
		return
	}
	if !s.allow(w, r, "token", s.limits.Token, false) {
		return
	}
	ctx := r.Context()
	f, terr := readForm(w, r)
	if terr == nil {
		var client *clients.Client
		client, terr = s.authenticateClient(ctx, r, f)
		if terr == nil {
			token := f.Get("token")
			if token == "" {
				terr = errInvalidRequest("token is required")
			} else if err := s.grants.RevokeToken(ctx, token, client.ID); err != nil && !errors.Is(err, grants.ErrInvalidToken) && !errors.Is(err, grants.ErrInvalidGrant) {
				s.log.ErrorContext(ctx, "revoke failed", "client_id", clip(client.ID), "err", err)
				terr = errUnavailable
			} else {
				s.m.event("revoke", "ok")
				noStore(w)
				w.WriteHeader(http.StatusOK)
				return
			}
		}
	}
	s.m.event("revoke", terr.code)
	writeTokenError(w, terr)
}
