package clients

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// preregisteredEntry is one client in the pre-registered clients file. The secret is given
// either in clear (client_secret, hashed on load) or as its SHA-256 in hex.
type preregisteredEntry struct {
	Metadata
	ClientSecret       string `json:"client_secret,omitempty"`
	ClientSecretSHA256 string `json:"client_secret_sha256,omitempty"`
}

// LoadPreregistered reads the operator's clients from a JSON file: either an array of client
// metadata objects or {"clients": [...]}. Each object is RFC 7591 client metadata plus
// client_id (required) and, for confidential clients, client_secret or client_secret_sha256
// (hex). The same redirect URI rules as for dynamic registration apply; token_endpoint_auth_method
// defaults to client_secret_basic when a secret is given, else none.
func LoadPreregistered(path string) ([]Client, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("clients: read pre-registered clients: %w", err)
	}
	var entries []preregisteredEntry
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var wrapper struct {
			Clients []preregisteredEntry `json:"clients"`
		}
		err = json.Unmarshal(trimmed, &wrapper)
		entries = wrapper.Clients
	} else {
		err = json.Unmarshal(trimmed, &entries)
	}
	if err != nil {
		return nil, fmt.Errorf("clients: parse %s: %w", path, err)
	}
	out := make([]Client, 0, len(entries))
	for i, e := range entries {
		c, err := e.client()
		if err != nil {
			return nil, fmt.Errorf("clients: %s: client %d: %w", path, i, err)
		}
		out = append(out, *c)
	}
	return out, nil
}

func (e *preregisteredEntry) client() (*Client, error) {
	if e.ClientID == "" || len(e.ClientID) > 200 || looksLikeURL(e.ClientID) {
		return nil, errors.New("client_id is required (a plain string, not a URL)")
	}
	hasSecret := e.ClientSecret != "" || e.ClientSecretSHA256 != ""
	if e.TokenEndpointAuthMethod == "" {
		e.TokenEndpointAuthMethod = AuthNone
		if hasSecret {
			e.TokenEndpointAuthMethod = AuthClientSecretBasic
		}
	}
	c, err := e.validate()
	if err != nil {
		return nil, err
	}
	c.ID = e.ClientID
	c.Kind = KindPreregistered
	switch {
	case c.Public() && hasSecret:
		return nil, errors.New("a client with token_endpoint_auth_method none must not have a secret")
	case !c.Public() && !hasSecret:
		return nil, errors.New("a confidential client needs client_secret or client_secret_sha256")
	case e.ClientSecret != "":
		sum := sha256.Sum256([]byte(e.ClientSecret))
		c.SecretHash = sum[:]
	case e.ClientSecretSHA256 != "":
		h, err := hex.DecodeString(e.ClientSecretSHA256)
		if err != nil || len(h) != sha256.Size {
			return nil, errors.New("client_secret_sha256 must be 64 hex digits")
		}
		c.SecretHash = h
	}
	return c, nil
}

// checkPreregistered validates a pre-registered client handed to NewRegistry.
func checkPreregistered(c *Client) error {
	if c.ID == "" || looksLikeURL(c.ID) {
		return fmt.Errorf("clients: pre-registered client needs a plain client_id")
	}
	if len(c.RedirectURIs) == 0 {
		return fmt.Errorf("clients: pre-registered client %q has no redirect_uris", c.ID)
	}
	for _, r := range c.RedirectURIs {
		if _, err := classifyRedirect(r); err != nil {
			return fmt.Errorf("clients: pre-registered client %q: %w", c.ID, err)
		}
	}
	if !c.Public() && len(c.SecretHash) != sha256.Size {
		return fmt.Errorf("clients: pre-registered client %q is confidential but has no secret hash", c.ID)
	}
	c.Kind = KindPreregistered
	return nil
}
