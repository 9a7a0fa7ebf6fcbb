package upstream

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/oauth2"
)

// Error is an error from the upstream identity provider: an error redirect to the callback,
// or a token endpoint error. It carries no token.
type Error struct {
	// Code is the OAuth error code (access_denied, invalid_grant, server_error,
	// temporarily_unavailable, …) or one of ours (invalid_id_token, client_assertion_failed).
	Code string
	// Description is the IdP's error_description, bounded in length.
	Description string
	// URI is the IdP's error_uri, if any.
	URI string
	// AADSTS is Entra's error number ("AADSTS50105") parsed from the description, if present.
	AADSTS string
	err    error
}

func (e *Error) Error() string {
	s := "upstream identity provider: " + e.Code
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// Unwrap returns the underlying transport or verification error, if any.
func (e *Error) Unwrap() error { return e.err }

// Class says who can act on an upstream error, and so what the MCP client is told and
// whether an existing session survives it.
type Class string

// The classes of upstream errors.
const (
	// ClassUser: the person signing in can fix it (cancelled, must complete MFA, must sign
	// in again). The client gets access_denied; a refresh that fails so ends the session.
	ClassUser Class = "user"
	// ClassAccess: the user is not allowed in (not assigned, Conditional Access, disabled,
	// not in the tenant, consent missing); an administrator of the user's organization acts.
	// The client gets access_denied; a refresh that fails so ends the session.
	ClassAccess Class = "access"
	// ClassRetry: this sign-in is spoiled (code expired or reused); starting over fixes it.
	// The client gets server_error; a refresh that fails so ends the session.
	ClassRetry Class = "retry"
	// ClassConfig: the gateway's own registration or settings are wrong; the gateway's
	// administrator acts. The client gets server_error; sessions are kept (not the user's fault).
	ClassConfig Class = "config"
	// ClassTransient: the identity provider is unavailable; retry later. The client gets
	// temporarily_unavailable; sessions are kept.
	ClassTransient Class = "transient"
)

// entry is one row of the error tables: a readable title, what to do (naming who must act),
// and the class.
type entry struct {
	title, hint string
	class       Class
}

// Who must act, as the hints say it.
const (
	actUser   = "What to do: "
	actAdmin  = "Who must act: an administrator of your organization (Microsoft Entra ID). "
	actGWAdm  = "Who must act: the administrator of this gateway. "
	actNobody = "What to do: "
)

// aadstsTable maps Entra error numbers (from error_description) to readable messages. Its keys
// are also the only values of the aadsts metric label besides "other" and "none".
var aadstsTable = map[string]entry{
	// Consent.
	"AADSTS65001": {"Consent is missing", actAdmin + "Grant admin consent for this application (Entra admin center → Enterprise applications → the gateway's app → Permissions → Grant admin consent), or let users consent to its permissions.", ClassAccess},
	"AADSTS90094": {"An administrator must approve this application", actAdmin + "Your organization does not let users consent to this application's permissions. An administrator must grant admin consent (Enterprise applications → the gateway's app → Permissions).", ClassAccess},
	"AADSTS90095": {"An administrator must approve this application", actAdmin + "Your organization requires admin approval for this application. Request approval in the sign-in dialog, or ask an administrator to grant admin consent.", ClassAccess},
	"AADSTS65004": {"You declined the permissions", actUser + "Sign in again and accept the permissions the application asks for.", ClassUser},
	// Assignment and account state.
	"AADSTS50105":   {"You are not assigned to this application", actAdmin + "The gateway's app requires user assignment. An administrator must assign your account (or a group you belong to) to it: Enterprise applications → the gateway's app → Users and groups → Add user/group.", ClassAccess},
	"AADSTS50057":   {"Your account is disabled", actAdmin + "Your account is disabled in your organization's directory. An administrator must re-enable it.", ClassAccess},
	"AADSTS50053":   {"Your account is locked", actUser + "Too many sign-in attempts locked your account. Wait and try again, or ask your administrator to unlock it.", ClassAccess},
	"AADSTS50055":   {"Your password has expired", actUser + "Change your password (https://aka.ms/sspr or your organization's portal), then sign in again.", ClassUser},
	"AADSTS50034":   {"This account does not exist in the organization", actUser + "Sign in with an account of the organization this gateway serves. If you should have access, an administrator must create your account or invite you as a guest.", ClassAccess},
	"AADSTS50020":   {"Accounts from your organization cannot sign in here", actAdmin + "Your account belongs to another organization (or is a personal Microsoft account). An administrator of the gateway's tenant must invite you as a guest, or make the app multi-tenant; otherwise sign in with an account of the gateway's organization.", ClassAccess},
	"AADSTS50126":   {"Wrong user name or password", actUser + "Sign in again with the right user name and password.", ClassUser},
	"AADSTS7000112": {"The application is disabled", actGWAdm + "The gateway's enterprise application is disabled for sign-in in this tenant (Enterprise applications → Properties → Enabled for users to sign-in).", ClassConfig},
	// Conditional Access, MFA, devices.
	"AADSTS53003": {"Blocked by Conditional Access", actAdmin + "A Conditional Access policy of your organization blocked this sign-in. An administrator can see which policy in the Entra sign-in logs (search by the correlation id of the sign-in).", ClassAccess},
	"AADSTS53000": {"Your device is not allowed", actAdmin + "A Conditional Access policy requires a compliant or managed device. Use a managed device, or ask an administrator.", ClassAccess},
	"AADSTS53001": {"Your device is not allowed", actAdmin + "A Conditional Access policy requires a domain-joined device. Use such a device, or ask an administrator.", ClassAccess},
	"AADSTS50097": {"Device authentication is required", actUser + "Sign in from a registered device, or ask an administrator.", ClassAccess},
	"AADSTS50076": {"Multi-factor authentication is required", actUser + "Sign in again and complete the multi-factor authentication prompt.", ClassUser},
	"AADSTS50079": {"You must set up multi-factor authentication", actUser + "Register a second factor (https://aka.ms/mfasetup), then sign in again.", ClassUser},
	"AADSTS50072": {"You must set up multi-factor authentication", actUser + "Register a second factor (https://aka.ms/mfasetup), then sign in again.", ClassUser},
	"AADSTS50074": {"Strong authentication is required", actUser + "Sign in again and complete the additional verification.", ClassUser},
	"AADSTS50078": {"Your multi-factor authentication has expired", actUser + "Sign in again and complete the multi-factor authentication prompt.", ClassUser},
	"AADSTS50158": {"An additional security check is required", actUser + "Sign in again and complete the security challenge.", ClassUser},
	"AADSTS50058": {"You are not signed in", actUser + "Your sign-in session was not found (signed out or cookies blocked). Sign in again.", ClassUser},
	"AADSTS50199": {"Confirmation needed", actUser + "Sign in again and confirm the prompt.", ClassUser},
	// Expired or spoiled grants.
	"AADSTS70000":  {"Your sign-in could not be completed", actUser + "The sign-in code was invalid or expired. Connect again from the application.", ClassRetry},
	"AADSTS54005":  {"Your sign-in could not be completed", actUser + "The sign-in code was already used. Connect again from the application.", ClassRetry},
	"AADSTS70008":  {"Your sign-in has expired", actUser + "Connect again from the application and sign in.", ClassRetry},
	"AADSTS700082": {"Your sign-in has expired", actUser + "The sign-in expired after a long time without use. Connect again from the application.", ClassRetry},
	"AADSTS50173":  {"Your sign-in was revoked", actUser + "Your credentials changed or your sessions were revoked. Connect again from the application and sign in.", ClassRetry},
	"AADSTS50132":  {"Your sign-in was revoked", actUser + "Your password changed or expired. Connect again from the application and sign in.", ClassRetry},
	"AADSTS50133":  {"Your sign-in was revoked", actUser + "Your password changed or expired. Connect again from the application and sign in.", ClassRetry},
	// The gateway's registration (client id, tenant, redirect URI, credentials).
	"AADSTS700016":  {"The gateway's application is not found", actGWAdm + "No application with the configured client id (MCPGATE_UPSTREAM_CLIENT_ID) exists in this tenant. Check the client id and MCPGATE_ENTRA_TENANT_ID; for a multi-tenant app, an administrator of the user's tenant must consent to it first.", ClassConfig},
	"AADSTS90002":   {"The tenant is not found", actGWAdm + "MCPGATE_ENTRA_TENANT_ID names no Entra tenant. Set it to the tenant id (a GUID).", ClassConfig},
	"AADSTS900023":  {"The tenant id is not valid", actGWAdm + "MCPGATE_ENTRA_TENANT_ID is not a valid tenant id. Set it to the tenant id (a GUID).", ClassConfig},
	"AADSTS50194":   {"The application is single-tenant", actGWAdm + "The app registration is single-tenant: set MCPGATE_ENTRA_TENANT_ID to its tenant id, not organizations or common.", ClassConfig},
	"AADSTS50011":   {"The redirect URI is not registered", actGWAdm + "Add the gateway's callback ({public URL}/oauth-callback, exactly, under the Web platform) to the app registration's redirect URIs.", ClassConfig},
	"AADSTS500113":  {"The redirect URI is not registered", actGWAdm + "The app registration has no reply address. Add {public URL}/oauth-callback under the Web platform.", ClassConfig},
	"AADSTS9002325": {"The redirect URI is registered for the wrong platform", actGWAdm + "Register {public URL}/oauth-callback under the Web platform, not Single-page application.", ClassConfig},
	"AADSTS700025":  {"The application is registered as a public client", actGWAdm + "The gateway is a confidential client: register the callback under the Web platform and turn off 'Allow public client flows'.", ClassConfig},
	"AADSTS700027":  {"The gateway's federated credential was rejected", actGWAdm + "The client assertion (the managed identity's token) failed validation. Check the app's federated credential: issuer https://login.microsoftonline.com/{tenant}/v2.0, subject = the managed identity's principal (object) id, audience api://AzureADTokenExchange; and that MCPGATE_UPSTREAM_FIC_CLIENT_ID is that identity's client id.", ClassConfig},
	"AADSTS700024":  {"The gateway's federated credential has expired", actGWAdm + "The managed identity token sent as client assertion is outside its validity time. Check the host clock; the gateway gets a fresh token for every request.", ClassConfig},
	"AADSTS70021":   {"No federated credential matches the gateway's identity", actGWAdm + "The app registration has no federated credential matching the managed identity token. Add one with issuer https://login.microsoftonline.com/{tenant}/v2.0, subject = the managed identity's principal (object) id, audience api://AzureADTokenExchange.", ClassConfig},
	"AADSTS700211":  {"No federated credential matches the gateway's identity", actGWAdm + "No federated credential has the token's issuer. The issuer must be https://login.microsoftonline.com/{tenant}/v2.0 of the managed identity's tenant.", ClassConfig},
	"AADSTS700212":  {"No federated credential matches the gateway's identity", actGWAdm + "No federated credential has the token's audience. The audience must be api://AzureADTokenExchange.", ClassConfig},
	"AADSTS700213":  {"No federated credential matches the gateway's identity", actGWAdm + "No federated credential has the token's subject. The subject must be the managed identity's principal (object) id — not its client id.", ClassConfig},
	"AADSTS7000215": {"The gateway's client secret is wrong", actGWAdm + "MCPGATE_UPSTREAM_CLIENT_SECRET is not a valid secret of the app registration (use the secret's value, not its id), or switch to the federated credential (MCPGATE_UPSTREAM_FIC_CLIENT_ID).", ClassConfig},
	"AADSTS7000222": {"The gateway's client secret has expired", actGWAdm + "Create a new client secret for the app registration and update MCPGATE_UPSTREAM_CLIENT_SECRET, or switch to the federated credential (MCPGATE_UPSTREAM_FIC_CLIENT_ID), which does not expire.", ClassConfig},
	"AADSTS7000218": {"The gateway sent no credential", actGWAdm + "Configure MCPGATE_UPSTREAM_FIC_CLIENT_ID (federated credential) or MCPGATE_UPSTREAM_CLIENT_SECRET.", ClassConfig},
	"AADSTS9010010": {"The identity provider refused a resource parameter", actGWAdm + "Entra's v2 endpoint does not accept `resource` together with scopes. mcpgate never sends it; check proxies or settings that add it, and express the API in MCPGATE_UPSTREAM_SCOPES instead.", ClassConfig},
	"AADSTS70011":   {"The requested permissions are not valid", actGWAdm + "Check MCPGATE_UPSTREAM_SCOPES: every scope must exist and belong to one API.", ClassConfig},
	"AADSTS500011":  {"A requested API is not found in the tenant", actGWAdm + "A scope in MCPGATE_UPSTREAM_SCOPES names an API that does not exist in the user's tenant.", ClassConfig},
	"AADSTS650056":  {"The application is misconfigured", actGWAdm + "The app registration's API permissions are invalid or missing; fix them and grant consent again.", ClassConfig},
	"AADSTS650057":  {"The application is misconfigured", actGWAdm + "A requested permission is not listed in the app registration's API permissions.", ClassConfig},
	"AADSTS900144":  {"The sign-in request is incomplete", actGWAdm + "The token request lacked a required parameter. This is a gateway bug or a proxy changing requests; check the logs.", ClassConfig},
	"AADSTS90014":   {"The sign-in request is incomplete", actGWAdm + "A required field was missing from the request. Check the gateway's logs.", ClassConfig},
	// The identity provider's own trouble.
	"AADSTS50000": {"Microsoft Entra ID had a problem", actNobody + "Try again in a moment.", ClassTransient},
	"AADSTS90033": {"Microsoft Entra ID is temporarily unavailable", actNobody + "Try again in a moment.", ClassTransient},
	"AADSTS50196": {"Too many sign-in attempts in a loop", actNobody + "Wait a minute, then connect again from the application.", ClassTransient},
}

// codeTable maps OAuth error codes to readable messages and classes. Its keys are the only
// values of the error metric label besides "other".
var codeTable = map[string]entry{
	"access_denied": {"Sign-in was cancelled or refused",
		actUser + "The identity provider did not grant access. Try again, or ask an administrator whether your account may use this application.", ClassUser},
	"invalid_grant": {"Your sign-in is no longer valid",
		actUser + "The identity provider no longer accepts this sign-in (it expired, was revoked, or the account was disabled). Sign in again.", ClassRetry},
	"invalid_client": {"The gateway is not configured correctly",
		actGWAdm + "The identity provider did not accept the gateway's credentials. Check the client id and secret or federated credential.", ClassConfig},
	"unauthorized_client": {"The gateway is not allowed to sign you in",
		actGWAdm + "The identity provider does not allow this application to use this flow. Check the app registration.", ClassConfig},
	"invalid_scope": {"The requested permissions are not valid",
		actGWAdm + "Check the configured upstream scopes (MCPGATE_UPSTREAM_SCOPES).", ClassConfig},
	"invalid_request": {"The sign-in request was not accepted",
		actGWAdm + "The identity provider rejected the gateway's request. Check the gateway's logs.", ClassConfig},
	"unsupported_response_type": {"The gateway is not configured correctly",
		actGWAdm + "The identity provider does not support the authorization-code flow for this application.", ClassConfig},
	"unsupported_grant_type": {"The gateway is not configured correctly",
		actGWAdm + "The identity provider does not allow this grant for this application.", ClassConfig},
	"consent_required": {"Consent is required",
		actAdmin + "An administrator must grant consent for this application, or you must consent when signing in.", ClassAccess},
	"interaction_required":       {"Sign-in needs your interaction", actUser + "Sign in again in the browser.", ClassUser},
	"login_required":             {"Sign-in is required", actUser + "Sign in again in the browser.", ClassUser},
	"account_selection_required": {"Choose an account", actUser + "Sign in again and pick the account to use.", ClassUser},
	"server_error": {"The identity provider had a problem",
		actNobody + "Try again in a moment. If it persists, an administrator should check the identity provider's status.", ClassTransient},
	"temporarily_unavailable": {"The identity provider is temporarily unavailable", actNobody + "Try again in a moment.", ClassTransient},
	"invalid_id_token": {"The sign-in could not be verified",
		actUser + "The identity provider's answer failed verification. Start the sign-in again; if it keeps failing, the gateway's administrator must check its issuer settings.", ClassRetry},
	"client_assertion_failed": {"The gateway could not prove its identity",
		actGWAdm + "The managed identity token for the federated credential could not be obtained. Check the gateway's managed identity (MCPGATE_UPSTREAM_FIC_CLIENT_ID) and that it is assigned to the gateway.", ClassConfig},
}

var aadstsPattern = regexp.MustCompile(`\bAADSTS(\d{4,8})\b`)

const maxDescription = 500

func newError(code, description, uri string) *Error {
	if len(description) > maxDescription {
		description = description[:maxDescription] + "…"
	}
	if len(code) > 100 {
		code = code[:100]
	}
	e := &Error{Code: code, Description: description, URI: uri}
	e.AADSTS = parseAADSTS(description)
	return e
}

func parseAADSTS(description string) string {
	if m := aadstsPattern.FindStringSubmatch(description); m != nil {
		return "AADSTS" + m[1]
	}
	return ""
}

// aadsts is the Entra error number: the parsed field, else found in the description.
func (e *Error) aadsts() string {
	if e.AADSTS != "" {
		return e.AADSTS
	}
	return parseAADSTS(e.Description)
}

// entry finds the error's row: the AADSTS table first, then the OAuth code.
func (e *Error) entry() (entry, bool) {
	if x, ok := aadstsTable[e.aadsts()]; ok {
		return x, true
	}
	x, ok := codeTable[strings.ToLower(e.Code)]
	return x, ok
}

// Class is who can act on the error (see the Class constants). Unknown errors are
// ClassTransient when the code says so, else ClassConfig (an administrator looks at it).
func (e *Error) Class() Class {
	if x, ok := e.entry(); ok {
		return x.class
	}
	return ClassConfig
}

// Temporary reports whether the failure is not about this user's sign-in: the IdP is
// unavailable, or the gateway itself is misconfigured. Such a failure must not end an existing
// session (retrying later, or after an administrator acts, may succeed); any other failure at
// refresh means the IdP no longer accepts the user.
func (e *Error) Temporary() bool {
	c := e.Class()
	return c == ClassTransient || c == ClassConfig
}

// Cancelled reports whether the user simply cancelled or declined at the IdP: the client gets
// access_denied straight away, without an error page.
func (e *Error) Cancelled() bool {
	if !strings.EqualFold(e.Code, "access_denied") {
		return false
	}
	a := e.aadsts()
	return a == "" || a == "AADSTS65004"
}

// ClientError is the OAuth error code the MCP client receives on its redirect URI (RFC 6749
// §4.1.2.1): access_denied when the user or their organization refused, temporarily_unavailable
// when the IdP is down, server_error otherwise (nothing the client can fix).
func (e *Error) ClientError() string {
	switch e.Class() {
	case ClassUser, ClassAccess:
		return "access_denied"
	case ClassTransient:
		return "temporarily_unavailable"
	default:
		return "server_error"
	}
}

// Status is the HTTP status of the error page shown in the browser.
func (e *Error) Status() int {
	switch e.Class() {
	case ClassUser, ClassAccess:
		return http.StatusForbidden
	case ClassTransient:
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadGateway
	}
}

// MetricCode is the error code as a bounded metric label: a known OAuth code, else "other".
func (e *Error) MetricCode() string {
	c := strings.ToLower(e.Code)
	if _, ok := codeTable[c]; ok {
		return c
	}
	return "other"
}

// MetricAADSTS is the Entra error number as a bounded metric label: a number of the table,
// "other" for an unknown one, "none" when there is none.
func (e *Error) MetricAADSTS() string {
	a := e.aadsts()
	if a == "" {
		return "none"
	}
	if _, ok := aadstsTable[a]; ok {
		return a
	}
	return "other"
}

// KnownAADSTS lists the Entra error numbers Explain knows (for docs and tests).
func KnownAADSTS() []string {
	out := make([]string, 0, len(aadstsTable))
	for k := range aadstsTable {
		out = append(out, k)
	}
	return out
}

// FromCallback returns the IdP's error from the callback query (error, error_description,
// error_uri), or nil when the query carries no error.
func FromCallback(q url.Values) *Error {
	code := q.Get("error")
	if code == "" {
		return nil
	}
	return newError(code, q.Get("error_description"), q.Get("error_uri"))
}

// fromTokenError turns an x/oauth2 exchange error into *Error.
func fromTokenError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode != "" {
			e := newError(re.ErrorCode, re.ErrorDescription, re.ErrorURI)
			e.err = err
			return e
		}
		code := "server_error"
		if re.Response != nil && (re.Response.StatusCode == 503 || re.Response.StatusCode == 429) {
			code = "temporarily_unavailable"
		}
		return &Error{Code: code, Description: "token endpoint refused the request", err: err}
	}
	return &Error{Code: "temporarily_unavailable", Description: "token endpoint unreachable", err: err}
}

// Explain returns a readable title and hint for an upstream error, for the error page and
// logs: the Entra AADSTS table first, then the OAuth error code, then a generic message. The
// hint names who must act (the user, their organization's administrator, or the gateway's
// administrator) and what to do.
func Explain(e *Error) (title, hint string) {
	if e == nil {
		return "Sign-in failed", "Start the sign-in again."
	}
	if x, ok := e.entry(); ok {
		return x.title, x.hint
	}
	return "Sign-in failed", "The identity provider reported an error. Start the sign-in again; if it persists, the gateway's administrator should check its logs."
}
