package clients

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on client registrations.
const (
	// MaxRegistrationBody is the largest /register body accepted (DESIGN: 16 KiB).
	MaxRegistrationBody = 16 << 10
	// MaxRedirectURIs is the most redirect URIs one client may register.
	MaxRedirectURIs = 10
	maxURILen       = 2000
	maxNameLen      = 200
)

// Scopes a client may register. The gateway's own scope and offline_access; nothing else.
var allowedScopes = []string{"mcp:tools", "offline_access"}

// Registration error codes (RFC 7591 §3.2.2).
const (
	ErrCodeInvalidRedirectURI    = "invalid_redirect_uri"
	ErrCodeInvalidClientMetadata = "invalid_client_metadata"
)

// RegistrationError is a refused registration; the caller answers HTTP 400 with
// {"error": Code, "error_description": Description}.
type RegistrationError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func (e *RegistrationError) Error() string {
	return "client registration: " + e.Code + ": " + e.Description
}

func metadataError(format string, args ...any) *RegistrationError {
	return &RegistrationError{Code: ErrCodeInvalidClientMetadata, Description: fmt.Sprintf(format, args...)}
}

func redirectError(format string, args ...any) *RegistrationError {
	return &RegistrationError{Code: ErrCodeInvalidRedirectURI, Description: fmt.Sprintf(format, args...)}
}

// Metadata is the client metadata of an RFC 7591 request or a Client ID Metadata Document.
// Unknown members are ignored (RFC 7591 §2).
type Metadata struct {
	ClientID                string   `json:"client_id,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	ApplicationType         string   `json:"application_type,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
}

// RegistrationResponse is the RFC 7591 §3.2.1 answer to a successful registration (the
// caller sends it with status 201). ClientSecret is present only for confidential clients,
// and is the only time the secret is ever shown.
type RegistrationResponse struct {
	ClientID              string `json:"client_id"`
	ClientSecret          string `json:"client_secret,omitempty"`
	ClientIDIssuedAt      int64  `json:"client_id_issued_at"`
	ClientSecretExpiresAt *int64 `json:"client_secret_expires_at,omitempty"`
	Metadata
}

// ParseMetadata decodes and validates an RFC 7591 registration body and returns the client it
// describes (without id, secret or kind). Defaults: grant_types [authorization_code,
// refresh_token], response_types [code], token_endpoint_auth_method client_secret_basic (RFC
// 7591 §2), application_type native when every redirect URI is loopback or a private-use
// scheme, else web.
func ParseMetadata(body []byte) (*Client, error) {
	if len(body) > MaxRegistrationBody {
		return nil, metadataError("registration body larger than %d bytes", MaxRegistrationBody)
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, metadataError("registration body must be a JSON object")
	}
	if !utf8.Valid(body) {
		return nil, metadataError("registration body is not valid UTF-8")
	}
	var m Metadata
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return nil, metadataError("registration body is not valid client metadata JSON")
	}
	if dec.More() {
		return nil, metadataError("registration body has data after the JSON object")
	}
	if _, err := dec.Token(); err == nil {
		return nil, metadataError("registration body has data after the JSON object")
	}
	return m.validate()
}

// validate checks every member and applies the defaults.
func (m *Metadata) validate() (*Client, error) {
	c := &Client{}
	if len(m.RedirectURIs) == 0 {
		return nil, redirectError("redirect_uris is required")
	}
	if len(m.RedirectURIs) > MaxRedirectURIs {
		return nil, redirectError("at most %d redirect_uris are allowed", MaxRedirectURIs)
	}
	allNative := true
	anyPrivateUse := false
	for _, r := range m.RedirectURIs {
		kind, err := classifyRedirect(r)
		if err != nil {
			return nil, err
		}
		switch kind {
		case redirectHTTPS:
			allNative = false
		case redirectPrivateUse:
			anyPrivateUse = true
		}
		if !slices.Contains(c.RedirectURIs, r) {
			c.RedirectURIs = append(c.RedirectURIs, r)
		}
	}

	switch m.ApplicationType {
	case "":
		c.ApplicationType = ApplicationWeb
		if allNative {
			c.ApplicationType = ApplicationNative
		}
	case ApplicationNative:
		c.ApplicationType = ApplicationNative
	case ApplicationWeb:
		if anyPrivateUse {
			return nil, redirectError("a web application may not use private-use URI scheme redirect URIs")
		}
		c.ApplicationType = ApplicationWeb
	default:
		return nil, metadataError("application_type must be web or native")
	}

	var err error
	if c.GrantTypes, err = subset("grant_types", m.GrantTypes,
		[]string{GrantAuthorizationCode, GrantRefreshToken},
		[]string{GrantAuthorizationCode, GrantRefreshToken}); err != nil {
		return nil, err
	}
	if !slices.Contains(c.GrantTypes, GrantAuthorizationCode) {
		return nil, metadataError("grant_types must include authorization_code")
	}
	if c.ResponseTypes, err = subset("response_types", m.ResponseTypes,
		[]string{ResponseTypeCode}, []string{ResponseTypeCode}); err != nil {
		return nil, err
	}
	if !slices.Contains(c.ResponseTypes, ResponseTypeCode) {
		return nil, metadataError("response_types must include code")
	}

	switch m.TokenEndpointAuthMethod {
	case "":
		c.TokenEndpointAuthMethod = AuthClientSecretBasic
	case AuthNone, AuthClientSecretBasic, AuthClientSecretPost:
		c.TokenEndpointAuthMethod = m.TokenEndpointAuthMethod
	default:
		return nil, metadataError("token_endpoint_auth_method must be none, client_secret_basic or client_secret_post")
	}

	if m.Scope != "" {
		fields := strings.Fields(m.Scope)
		if len(fields) == 0 || len(m.Scope) > 200 {
			return nil, metadataError("scope is malformed")
		}
		var scopes []string
		for _, s := range fields {
			if !slices.Contains(allowedScopes, s) {
				return nil, metadataError("scope %q is not supported (allowed: %s)", truncate(s, 40), strings.Join(allowedScopes, " "))
			}
			if !slices.Contains(scopes, s) {
				scopes = append(scopes, s)
			}
		}
		c.Scope = strings.Join(scopes, " ")
	}

	if err := checkText("client_name", m.ClientName); err != nil {
		return nil, err
	}
	c.Name = m.ClientName
	for _, f := range []struct {
		name string
		v    string
		dst  *string
	}{{"client_uri", m.ClientURI, &c.URI}, {"logo_uri", m.LogoURI, &c.LogoURI}} {
		if f.v == "" {
			continue
		}
		if err := checkHTTPSURL(f.name, f.v); err != nil {
			return nil, err
		}
		*f.dst = f.v
	}
	return c, nil
}

// subset checks that vals ⊆ allowed (deduplicated), returning def when vals is empty.
func subset(name string, vals, allowed, def []string) ([]string, error) {
	if len(vals) == 0 {
		return slices.Clone(def), nil
	}
	if len(vals) > 10 {
		return nil, metadataError("%s has too many values", name)
	}
	var out []string
	for _, v := range vals {
		if !slices.Contains(allowed, v) {
			return nil, metadataError("%s value %q is not supported (allowed: %s)", name, truncate(v, 40), strings.Join(allowed, ", "))
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

type redirectKind int

const (
	redirectHTTPS redirectKind = iota
	redirectLoopback
	redirectPrivateUse
)

// deniedSchemes are never accepted as private-use redirect URI schemes.
var deniedSchemes = []string{
	"javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "view-source",
	"http", "https", "ws", "wss", "ftp", "mailto", "tel", "sms", "urn", "jar", "intent", "chrome",
	"chrome-extension", "resource", "ms-settings",
}

// classifyRedirect validates one redirect URI: https with a host, http only on a loopback host
// (127.0.0.1, [::1], localhost), or a private-use scheme (RFC 8252 §7.1, reverse-DNS style
// recommended); never a fragment, user info, whitespace or control characters.
func classifyRedirect(raw string) (redirectKind, error) {
	if raw == "" || len(raw) > maxURILen {
		return 0, redirectError("redirect URI is empty or longer than %d characters", maxURILen)
	}
	for _, r := range raw {
		if r <= ' ' || r == 0x7f || unicode.IsSpace(r) || r > unicode.MaxASCII {
			return 0, redirectError("redirect URI contains whitespace, control or non-ASCII characters")
		}
	}
	if strings.ContainsAny(raw, "#\\") {
		return 0, redirectError("redirect URI must not contain a fragment or backslash")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return 0, redirectError("redirect URI %q is not an absolute URI", truncate(raw, 80))
	}
	if u.User != nil {
		return 0, redirectError("redirect URI must not contain user info")
	}
	scheme := u.Scheme
	if !strings.HasPrefix(raw, scheme+":") {
		return 0, redirectError("redirect URI scheme must be lower case")
	}
	switch scheme {
	case "https":
		if u.Host == "" || u.Hostname() == "" || u.Opaque != "" {
			return 0, redirectError("https redirect URI needs a host")
		}
		return redirectHTTPS, nil
	case "http":
		if u.Opaque != "" || !isLoopbackRedirect(u) || !strings.HasPrefix(raw, "http://") {
			return 0, redirectError("http redirect URIs are allowed only on loopback (127.0.0.1, [::1], localhost)")
		}
		if _, _, _, ok := splitLoopback(raw); !ok {
			return 0, redirectError("loopback redirect URI %q is malformed", truncate(raw, 80))
		}
		return redirectLoopback, nil
	}
	if len(scheme) < 3 || slices.Contains(deniedSchemes, scheme) {
		return 0, redirectError("redirect URI scheme %q is not allowed", truncate(scheme, 40))
	}
	return redirectPrivateUse, nil
}

// checkHTTPSURL validates client_uri and logo_uri: https with a host, bounded, no user info.
func checkHTTPSURL(name, raw string) error {
	if len(raw) > maxURILen {
		return metadataError("%s is longer than %d characters", name, maxURILen)
	}
	for _, r := range raw {
		if r <= ' ' || r == 0x7f || r > unicode.MaxASCII {
			return metadataError("%s contains whitespace, control or non-ASCII characters", name)
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.Opaque != "" {
		return metadataError("%s must be an https URL", name)
	}
	return nil
}

// checkText bounds a display string and refuses control characters.
func checkText(name, s string) error {
	if utf8.RuneCountInString(s) > maxNameLen {
		return metadataError("%s is longer than %d characters", name, maxNameLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069') {
			return metadataError("%s contains control characters", name)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// response builds the RFC 7591 answer for c; secret is the freshly issued secret, if any.
func response(c *Client, secret string) *RegistrationResponse {
	resp := &RegistrationResponse{
		ClientID:         c.ID,
		ClientIDIssuedAt: c.CreatedAt.Unix(),
		Metadata: Metadata{
			RedirectURIs:            c.RedirectURIs,
			ClientName:              c.Name,
			ClientURI:               c.URI,
			LogoURI:                 c.LogoURI,
			GrantTypes:              c.GrantTypes,
			ResponseTypes:           c.ResponseTypes,
			TokenEndpointAuthMethod: c.TokenEndpointAuthMethod,
			ApplicationType:         c.ApplicationType,
			Scope:                   c.Scope,
		},
	}
	if secret != "" {
		resp.ClientSecret = secret
		var never int64
		resp.ClientSecretExpiresAt = &never
	}
	return resp
}
