// Package clients is the OAuth client registry of the gateway's authorization server: clients
// registered dynamically (RFC 7591), clients identified by a Client ID Metadata Document URL,
// and clients pre-registered by the operator. Dynamic registrations are durable (a local
// directory or a blob container) with a cache in front; metadata documents are fetched with
// SSRF protection and cached.
package clients

import (
	"net/url"
	"slices"
	"strings"
	"time"
)

// Kind says where a client's registration comes from.
type Kind string

// The kinds of client.
const (
	// KindDynamic is a client registered through /register (RFC 7591).
	KindDynamic Kind = "dynamic"
	// KindMetadataDocument is a client whose client_id is the https URL of its metadata document.
	KindMetadataDocument Kind = "metadata_document"
	// KindPreregistered is a client configured by the operator.
	KindPreregistered Kind = "preregistered"
)

// Token endpoint authentication methods.
const (
	AuthNone              = "none"
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
)

// Grant and response types.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	ResponseTypeCode       = "code"
)

// Application types (OpenID Connect Dynamic Client Registration).
const (
	ApplicationWeb    = "web"
	ApplicationNative = "native"
)

// Client is one registered OAuth client. It never holds the client secret, only its SHA-256.
type Client struct {
	ID                      string    `json:"client_id"`
	SecretHash              []byte    `json:"secret_hash,omitempty"` // SHA-256 of the secret (base64 in JSON)
	Name                    string    `json:"client_name,omitempty"`
	URI                     string    `json:"client_uri,omitempty"`
	LogoURI                 string    `json:"logo_uri,omitempty"`
	RedirectURIs            []string  `json:"redirect_uris"`
	GrantTypes              []string  `json:"grant_types"`
	ResponseTypes           []string  `json:"response_types"`
	TokenEndpointAuthMethod string    `json:"token_endpoint_auth_method"`
	ApplicationType         string    `json:"application_type"`
	Scope                   string    `json:"scope,omitempty"`
	Kind                    Kind      `json:"kind"`
	CreatedAt               time.Time `json:"created_at"`
	LastUsedAt              time.Time `json:"last_used_at,omitzero"`
}

// Public reports whether the client has no secret (token_endpoint_auth_method "none").
func (c *Client) Public() bool {
	return c.TokenEndpointAuthMethod == AuthNone || c.TokenEndpointAuthMethod == ""
}

// AllowsGrant reports whether the client is registered for the grant type g.
func (c *Client) AllowsGrant(g string) bool { return slices.Contains(c.GrantTypes, g) }

// RedirectAllowed reports whether uri is one of the client's redirect URIs. The comparison is
// an exact string match, except that for a registered loopback redirect URI
// (http://127.0.0.1:PORT, http://[::1]:PORT, http://localhost:PORT) the port may differ
// (RFC 8252 §7.3). A URI with a fragment is never allowed.
func (c *Client) RedirectAllowed(uri string) bool {
	if uri == "" || strings.ContainsAny(uri, "#") {
		return false
	}
	for _, r := range c.RedirectURIs {
		if r == uri {
			return true
		}
		rh, _, rrest, ok := splitLoopback(r)
		if !ok {
			continue
		}
		uh, _, urest, ok := splitLoopback(uri)
		if ok && uh == rh && urest == rrest {
			return true
		}
	}
	return false
}

// splitLoopback splits a loopback http URI into its host (127.0.0.1, [::1] or localhost), its
// port and the rest (path and query), working on the raw string so that no normalisation can
// make two different strings equal. ok is false for anything else.
func splitLoopback(raw string) (host, port, rest string, ok bool) {
	const prefix = "http://"
	if !strings.HasPrefix(raw, prefix) || strings.ContainsAny(raw, "#\\") {
		return "", "", "", false
	}
	s := raw[len(prefix):]
	end := strings.IndexAny(s, "/?")
	authority := s
	if end >= 0 {
		authority, rest = s[:end], s[end:]
	}
	switch {
	case strings.HasPrefix(authority, "[::1]"):
		host, port = "[::1]", authority[len("[::1]"):]
	case strings.HasPrefix(authority, "127.0.0.1"):
		host, port = "127.0.0.1", authority[len("127.0.0.1"):]
	case strings.HasPrefix(authority, "localhost"):
		host, port = "localhost", authority[len("localhost"):]
	default:
		return "", "", "", false
	}
	if port != "" {
		p, found := strings.CutPrefix(port, ":")
		if !found || !validPort(p) {
			return "", "", "", false
		}
		port = p
	}
	return host, port, rest, true
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n >= 1 && n <= 65535
}

// isLoopbackRedirect reports whether u is an http redirect URI on a loopback host.
func isLoopbackRedirect(u *url.URL) bool {
	if u.Scheme != "http" {
		return false
	}
	switch u.Hostname() {
	case "127.0.0.1", "::1", "localhost":
		return true
	}
	return false
}
