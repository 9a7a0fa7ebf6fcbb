// Package upstream is the gateway's client of the upstream identity provider: OIDC discovery,
// the authorization-code flow with our own PKCE and nonce, ID-token validation, refresh, the
// mapping of IdP errors to readable messages, and a development login for local use.
package upstream

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/mcpgate/mcpgate/gateway/internal/identity"
)

// Provider is what the OAuth layer needs from an upstream identity provider. Both *OIDC and
// *DevLogin implement it.
type Provider interface {
	// AuthCodeURL is where the browser goes to sign in; state, nonce and the PKCE verifier
	// are the caller's (random, stored server-side).
	AuthCodeURL(state, nonce, verifier string) string
	// Exchange redeems the code from the callback and returns the verified identity.
	Exchange(ctx context.Context, code, verifier, nonce string) (identity.User, identity.Tokens, error)
	// Refresh renews the upstream tokens. A user the IdP no longer accepts gets an error.
	Refresh(ctx context.Context, old identity.Tokens) (identity.User, identity.Tokens, error)
}

// ClientAssertionType is the client_assertion_type of a JWT client assertion (RFC 7523).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// baseScopes are always requested.
var baseScopes = []string{oidc.ScopeOpenID, "profile", oidc.ScopeOfflineAccess}

// Config configures an OIDC upstream.
type Config struct {
	// Issuer is the OIDC issuer URL (discovery at {Issuer}/.well-known/openid-configuration).
	Issuer string
	// ClientID and ClientSecret are the gateway's registration at the IdP. ClientSecret is
	// empty when ClientAssertion is set.
	ClientID     string
	ClientSecret string
	// RedirectURL is the gateway's callback, {public URL}/oauth-callback.
	RedirectURL string
	// Scopes are added to "openid profile offline_access".
	Scopes []string
	// ClientAssertion, when set, returns a signed assertion (a federated credential, e.g. a
	// managed identity token for api://AzureADTokenExchange) sent as client_assertion instead
	// of a secret.
	ClientAssertion func(ctx context.Context) (string, error)
	// HTTPClient is used for discovery, keys and token requests (default: a client with a
	// 15 s timeout).
	HTTPClient *http.Client
}

// OIDC is an upstream OpenID Connect provider found through discovery.
type OIDC struct {
	cfg Config
	// issuerTemplate is set for Entra's multi-tenant endpoints (organizations, common,
	// consumers): the discovered issuer with a "{tenantid}" placeholder, which each ID token's
	// iss must match with its own tid.
	issuerTemplate string
	oauth          oauth2.Config
	provider       *oidc.Provider
	verifier       *oidc.IDTokenVerifier
	client         *http.Client
	basic          bool // client secret sent with HTTP Basic (else in the form)
}

// New discovers the provider and prepares the code flow.
func New(ctx context.Context, cfg Config) (*OIDC, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.RedirectURL == "" {
		return nil, errors.New("upstream: issuer, client id and redirect URL are required")
	}
	if cfg.ClientSecret != "" && cfg.ClientAssertion != nil {
		return nil, errors.New("upstream: configure a client secret or a client assertion, not both")
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	dctx := oidc.ClientContext(ctx, client)
	multi := IsEntraMultiTenant(cfg.Issuer)
	if multi {
		// The discovery document's issuer is a template; each token's issuer is checked in
		// verify against its own tid instead.
		dctx = oidc.InsecureIssuerURLContext(dctx, cfg.Issuer)
	}
	provider, err := oidc.NewProvider(dctx, cfg.Issuer)
	if err != nil {
		var mismatch *oidc.IssuerMismatchError
		if errors.As(err, &mismatch) {
			return nil, fmt.Errorf("upstream: discovery of %s: %w (for Entra ID, set MCPGATE_ENTRA_TENANT_ID to the tenant id, a GUID, rather than a domain name)", cfg.Issuer, err)
		}
		return nil, fmt.Errorf("upstream: discovery of %s: %w", cfg.Issuer, err)
	}
	var meta struct {
		Issuer      string   `json:"issuer"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
		PKCE        []string `json:"code_challenge_methods_supported"`
	}
	if err := provider.Claims(&meta); err != nil {
		return nil, fmt.Errorf("upstream: discovery document of %s: %w", cfg.Issuer, err)
	}
	var issuerTemplate string
	if multi {
		if strings.Count(meta.Issuer, tenantPlaceholder) != 1 {
			return nil, fmt.Errorf("upstream: %s is a multi-tenant endpoint but its discovery issuer %q has no %s placeholder", cfg.Issuer, meta.Issuer, tenantPlaceholder)
		}
		issuerTemplate = meta.Issuer
	}
	if len(meta.PKCE) > 0 && !slices.Contains(meta.PKCE, "S256") {
		return nil, fmt.Errorf("upstream: %s does not support PKCE S256", cfg.Issuer)
	}
	o := &OIDC{cfg: cfg, provider: provider, client: client, issuerTemplate: issuerTemplate}
	endpoint := provider.Endpoint()
	endpoint.AuthStyle = oauth2.AuthStyleInParams
	if cfg.ClientSecret != "" && (len(meta.AuthMethods) == 0 || slices.Contains(meta.AuthMethods, "client_secret_basic")) {
		endpoint.AuthStyle = oauth2.AuthStyleInHeader
		o.basic = true
	}
	o.oauth = oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		Endpoint:     endpoint,
		RedirectURL:  cfg.RedirectURL,
		Scopes:       scopes(cfg.Scopes),
	}
	o.verifier = provider.VerifierContext(oidc.ClientContext(context.WithoutCancel(ctx), client),
		&oidc.Config{ClientID: cfg.ClientID, SkipIssuerCheck: multi})
	return o, nil
}

// tenantPlaceholder stands for the tenant id in the issuer of Entra's multi-tenant discovery
// documents.
const tenantPlaceholder = "{tenantid}"

// multiTenantSegments are the tenant path segments of Entra's multi-tenant endpoints.
var multiTenantSegments = []string{"common", "organizations", "consumers"}

// IsEntraMultiTenant reports whether issuer is one of Entra's multi-tenant endpoints
// ({authority}/common/v2.0, /organizations/v2.0 or /consumers/v2.0): their ID tokens carry the
// issuer of the user's own tenant, so the issuer is checked per token against its tid (and
// the tenants that may sign in are the policy's MCPGATE_ALLOWED_TENANTS).
func IsEntraMultiTenant(issuer string) bool {
	u, err := url.Parse(issuer)
	if err != nil {
		return false
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	return len(segs) == 2 && segs[1] == "v2.0" && slices.Contains(multiTenantSegments, strings.ToLower(segs[0]))
}

// EntraIssuer is the v2.0 issuer of an Entra tenant (a tenant id, or organizations, common or
// consumers for multi-tenant apps) at the given authority host (empty: the public cloud,
// https://login.microsoftonline.com).
func EntraIssuer(authority, tenant string) (string, error) {
	if authority == "" {
		authority = "https://login.microsoftonline.com"
	}
	t := strings.TrimSpace(tenant)
	if !tenantPattern.MatchString(t) && !slices.Contains(multiTenantSegments, strings.ToLower(t)) {
		return "", fmt.Errorf("upstream: Entra tenant %q: want the tenant id (a GUID), or organizations / common for a multi-tenant app", tenant)
	}
	return strings.TrimRight(authority, "/") + "/" + strings.ToLower(t) + "/v2.0", nil
}

// tenantPattern is an Entra tenant id.
var tenantPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func scopes(extra []string) []string {
	out := slices.Clone(baseScopes)
	for _, s := range extra {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Issuer is the provider's issuer URL as discovered.
func (o *OIDC) Issuer() string { return o.cfg.Issuer }

// Origin is the scheme://host[:port] of the authorization endpoint, for the consent page's
// CSP form-action.
func (o *OIDC) Origin() string {
	u, err := url.Parse(o.oauth.Endpoint.AuthURL)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// AuthCodeURL builds the authorization request: response_type=code, our client id, redirect
// URI and scopes, state, nonce and the S256 challenge of verifier. It never sends `resource`
// (Entra rejects it, AADSTS9010010).
func (o *OIDC) AuthCodeURL(state, nonce, verifier string) string {
	return o.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))
}

// clientAuthParams returns the client assertion parameters when a federated credential is
// configured.
func (o *OIDC) clientAuthParams(ctx context.Context) (url.Values, error) {
	if o.cfg.ClientAssertion == nil {
		return nil, nil
	}
	a, err := o.cfg.ClientAssertion(ctx)
	if err != nil {
		return nil, &Error{Code: "client_assertion_failed", Description: "could not obtain the federated credential: " + err.Error(), err: err}
	}
	return url.Values{"client_assertion_type": {ClientAssertionType}, "client_assertion": {a}}, nil
}

// Exchange redeems the authorization code with the PKCE verifier, verifies the ID token
// (signature, issuer, audience, expiry) and its nonce, and maps the claims. IdP errors are
// returned as *Error.
func (o *OIDC) Exchange(ctx context.Context, code, verifier, nonce string) (identity.User, identity.Tokens, error) {
	if code == "" || verifier == "" || nonce == "" {
		return identity.User{}, identity.Tokens{}, errors.New("upstream: code, verifier and nonce are required")
	}
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	extra, err := o.clientAuthParams(ctx)
	if err != nil {
		return identity.User{}, identity.Tokens{}, err
	}
	for k, v := range extra {
		opts = append(opts, oauth2.SetAuthURLParam(k, v[0]))
	}
	tok, err := o.oauth.Exchange(context.WithValue(ctx, oauth2.HTTPClient, o.client), code, opts...)
	if err != nil {
		return identity.User{}, identity.Tokens{}, fromTokenError(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return identity.User{}, identity.Tokens{}, &Error{Code: "invalid_id_token", Description: "the token response has no id_token"}
	}
	user, err := o.verify(ctx, raw)
	if err != nil {
		return identity.User{}, identity.Tokens{}, err
	}
	if subtle.ConstantTimeCompare([]byte(user.nonce), []byte(nonce)) != 1 {
		return identity.User{}, identity.Tokens{}, &Error{Code: "invalid_id_token", Description: "ID token nonce does not match"}
	}
	return user.User, identity.Tokens{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken,
		IDToken: raw, Expiry: tok.Expiry}, nil
}

// claims are the ID token claims we map.
type claims struct {
	Sub               string   `json:"sub"`
	OID               string   `json:"oid"`
	TID               string   `json:"tid"`
	Iss               string   `json:"iss"`
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	Email             string   `json:"email"`
	EmailVerified     any      `json:"email_verified"`
	EmailDomainOwner  any      `json:"xms_edov"`
	Roles             []string `json:"roles"`
	Groups            []string `json:"groups"`
	// ClaimNames and HasGroups are Entra's groups overage indicators: too many groups for
	// the token, so `groups` is left out.
	ClaimNames map[string]any `json:"_claim_names"`
	HasGroups  any            `json:"hasgroups"`
	Nonce      string         `json:"nonce"`
}

func (c claims) user() identity.User {
	u := identity.User{Subject: c.Sub, ObjectID: c.OID, TenantID: c.TID, Issuer: c.Iss, Name: c.Name,
		Username: c.PreferredUsername, Email: c.Email, Roles: c.Roles, Groups: c.Groups,
		EmailVerified: c.Email != "" && (truthy(c.EmailVerified) || truthy(c.EmailDomainOwner)),
		GroupsOverage: c.ClaimNames["groups"] != nil || truthy(c.HasGroups)}
	if u.ObjectID == "" {
		u.ObjectID = c.Sub
	}
	return u
}

// truthy reads a boolean claim that some IdPs send as a string.
func truthy(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return strings.EqualFold(b, "true")
	}
	return false
}

type verifiedUser struct {
	identity.User
	nonce string
}

func (o *OIDC) verify(ctx context.Context, raw string) (verifiedUser, error) {
	tok, err := o.verifier.Verify(oidc.ClientContext(ctx, o.client), raw)
	if err != nil {
		if keysUnavailable(ctx, err) {
			// Nothing is known about the token yet: the IdP (or this request) failed, not the
			// sign-in. At refresh this must not end the session.
			return verifiedUser{}, &Error{Code: "temporarily_unavailable", Description: "the identity provider's signing keys could not be fetched to check the ID token", err: err}
		}
		return verifiedUser{}, &Error{Code: "invalid_id_token", Description: "ID token rejected: " + err.Error(), err: err}
	}
	var c claims
	if err := tok.Claims(&c); err != nil {
		return verifiedUser{}, &Error{Code: "invalid_id_token", Description: "ID token claims unreadable", err: err}
	}
	if c.Sub == "" {
		return verifiedUser{}, &Error{Code: "invalid_id_token", Description: "ID token has no sub"}
	}
	if o.issuerTemplate != "" {
		// Multi-tenant: the issuer must be the one of the token's own tenant.
		if !tenantPattern.MatchString(c.TID) || c.Iss != strings.Replace(o.issuerTemplate, tenantPlaceholder, c.TID, 1) {
			return verifiedUser{}, &Error{Code: "invalid_id_token", Description: "ID token issuer does not match its tenant"}
		}
	}
	return verifiedUser{User: c.user(), nonce: c.Nonce}, nil
}

// keysUnavailable reports whether an ID token check failed because the IdP's key set could
// not be fetched (network error, an error status, or ctx ended meanwhile) rather than because
// the token is bad. go-oidc wraps that failure with %v, so only its message tells:
// "failed to verify signature: fetching keys …" (oidc/jwks.go, RemoteKeySet.verify).
func keysUnavailable(ctx context.Context, err error) bool {
	return ctx.Err() != nil || strings.Contains(err.Error(), "fetching keys")
}

// maxTokenResponse bounds a token endpoint response.
const maxTokenResponse = 1 << 20

// Refresh renews the tokens with the refresh_token grant, authenticating as on Exchange. The
// old refresh token is kept when the IdP returns none. When a new ID token comes back it is
// verified (no nonce) and its subject must match; the returned User then carries the new
// claims (so policy can re-check roles). Otherwise the User is the one from the previous ID
// token, unchanged. A refused refresh (disabled user, revoked grant) is an *Error, usually
// invalid_grant.
func (o *OIDC) Refresh(ctx context.Context, old identity.Tokens) (identity.User, identity.Tokens, error) {
	if old.RefreshToken == "" {
		return identity.User{}, identity.Tokens{}, &Error{Code: "invalid_grant", Description: "no upstream refresh token"}
	}
	// scope is sent again (Entra documents it as required on refresh; with openid it returns a
	// new ID token, so roles and groups are re-checked); resource never is.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {old.RefreshToken}, "scope": {strings.Join(o.oauth.Scopes, " ")}}
	extra, err := o.clientAuthParams(ctx)
	if err != nil {
		return identity.User{}, identity.Tokens{}, err
	}
	for k, v := range extra {
		form[k] = v
	}
	if !o.basic {
		form.Set("client_id", o.cfg.ClientID)
		if o.cfg.ClientSecret != "" {
			form.Set("client_secret", o.cfg.ClientSecret)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.oauth.Endpoint.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return identity.User{}, identity.Tokens{}, fmt.Errorf("upstream: refresh request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if o.basic {
		req.SetBasicAuth(url.QueryEscape(o.cfg.ClientID), url.QueryEscape(o.cfg.ClientSecret))
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return identity.User{}, identity.Tokens{}, &Error{Code: "temporarily_unavailable", Description: "token endpoint unreachable", err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return identity.User{}, identity.Tokens{}, &Error{Code: "temporarily_unavailable", Description: "token response unreadable", err: err}
	}
	var tr struct {
		AccessToken  string          `json:"access_token"`
		RefreshToken string          `json:"refresh_token"`
		IDToken      string          `json:"id_token"`
		ExpiresIn    json.Number     `json:"expires_in"`
		Error        string          `json:"error"`
		Description  string          `json:"error_description"`
		ErrorURI     string          `json:"error_uri"`
		ErrorCodes   json.RawMessage `json:"error_codes"`
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	jsonErr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK || tr.Error != "" {
		if jsonErr != nil || tr.Error == "" {
			code := "server_error"
			if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
				code = "temporarily_unavailable"
			}
			return identity.User{}, identity.Tokens{}, &Error{Code: code, Description: fmt.Sprintf("token endpoint answered HTTP %d", resp.StatusCode)}
		}
		return identity.User{}, identity.Tokens{}, newError(tr.Error, tr.Description, tr.ErrorURI)
	}
	if jsonErr != nil || (mt != "" && mt != "application/json") || tr.AccessToken == "" {
		return identity.User{}, identity.Tokens{}, &Error{Code: "server_error", Description: "token endpoint returned an unusable response"}
	}
	next := identity.Tokens{AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, IDToken: tr.IDToken}
	if next.RefreshToken == "" {
		next.RefreshToken = old.RefreshToken
	}
	if n, err := tr.ExpiresIn.Int64(); err == nil && n > 0 {
		next.Expiry = time.Now().Add(time.Duration(n) * time.Second)
	}
	prev, _ := UnverifiedUser(old.IDToken)
	if tr.IDToken == "" {
		next.IDToken = old.IDToken
		return prev, next, nil
	}
	v, err := o.verify(ctx, tr.IDToken)
	if err != nil {
		return identity.User{}, identity.Tokens{}, err
	}
	if prev.Subject != "" && v.Subject != prev.Subject {
		return identity.User{}, identity.Tokens{}, &Error{Code: "invalid_id_token", Description: "refreshed ID token is for another subject"}
	}
	return v.User, next, nil
}

// UnverifiedUser maps the claims of an ID token that was verified earlier (one from our own
// encrypted store) without checking it again; it must never be used on a token from outside.
func UnverifiedUser(idToken string) (identity.User, error) {
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		return identity.User{}, errors.New("upstream: not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return identity.User{}, fmt.Errorf("upstream: JWT payload: %w", err)
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return identity.User{}, fmt.Errorf("upstream: JWT claims: %w", err)
	}
	return c.user(), nil
}
