package upstream

import (
	"errors"
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

// Temporary reports whether retrying later may succeed.
func (e *Error) Temporary() bool {
	return e.Code == "temporarily_unavailable" || e.Code == "server_error"
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
	if m := aadstsPattern.FindStringSubmatch(description); m != nil {
		e.AADSTS = "AADSTS" + m[1]
	}
	return e
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

// explanation is a readable title and hint for an error.
type explanation struct{ title, hint string }

// aadstsExplanations maps Entra error numbers to readable messages (filled by the Entra work).
var aadstsExplanations = map[string]explanation{}

// codeExplanations maps OAuth error codes to readable messages.
var codeExplanations = map[string]explanation{
	"access_denied": {"Sign-in was cancelled or refused",
		"The identity provider did not grant access. Try again, or ask an administrator whether your account may use this application."},
	"invalid_grant": {"Your sign-in is no longer valid",
		"The identity provider no longer accepts this sign-in (it expired, was revoked, or the account was disabled). Sign in again."},
	"invalid_client": {"The gateway is not configured correctly",
		"The identity provider did not accept the gateway's credentials. An administrator must check the client id and secret or federated credential."},
	"unauthorized_client": {"The gateway is not allowed to sign you in",
		"The identity provider does not allow this application to use this flow. An administrator must check the app registration."},
	"invalid_scope": {"The requested permissions are not valid",
		"An administrator must check the configured upstream scopes."},
	"consent_required": {"Consent is required",
		"An administrator must grant consent for this application, or you must consent when signing in."},
	"interaction_required": {"Sign-in needs your interaction",
		"Sign in again in the browser."},
	"login_required": {"Sign-in is required", "Sign in again in the browser."},
	"server_error": {"The identity provider had a problem",
		"Try again in a moment. If it persists, an administrator should check the identity provider's status."},
	"temporarily_unavailable": {"The identity provider is temporarily unavailable", "Try again in a moment."},
	"invalid_id_token": {"The sign-in could not be verified",
		"The identity provider's answer failed verification. Start the sign-in again."},
	"client_assertion_failed": {"The gateway could not prove its identity",
		"The managed identity token for the federated credential could not be obtained. An administrator must check the gateway's identity."},
}

// Explain returns a readable title and hint for an upstream error, for the error page and
// logs: the Entra AADSTS table first, then the OAuth error code, then a generic message.
func Explain(e *Error) (title, hint string) {
	if e == nil {
		return "Sign-in failed", "Start the sign-in again."
	}
	if x, ok := aadstsExplanations[e.AADSTS]; ok && e.AADSTS != "" {
		return x.title, x.hint
	}
	if x, ok := codeExplanations[strings.ToLower(e.Code)]; ok {
		return x.title, x.hint
	}
	return "Sign-in failed", "The identity provider reported an error. Start the sign-in again."
}
