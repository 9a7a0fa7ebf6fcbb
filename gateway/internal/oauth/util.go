package oauth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// b64 is strict, so that every value has exactly one encoding: a cookie MAC whose last
// character differs only in its unused bits is not the same MAC (RawURLEncoding alone would
// decode both to the same bytes).
var b64 = base64.RawURLEncoding.Strict()

// randomToken returns n random bytes, base64url without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24: it crashes the program instead)
	return b64.EncodeToString(b)
}

// hashKey is the hex SHA-256 of a domain label and a secret value: used to build store keys
// from random values, so that the store never holds the value itself.
func hashKey(label, v string) string {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write([]byte(v))
	return hex.EncodeToString(h.Sum(nil))
}

// s256 is the PKCE S256 transform: base64url(SHA-256(verifier)).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return b64.EncodeToString(sum[:])
}

// validPKCEValue reports whether v is 43–128 characters of the RFC 7636 unreserved set (a
// code_verifier; an S256 code_challenge is always 43 base64url characters).
func validPKCEValue(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// validS256Challenge reports whether c looks like base64url(SHA-256(...)): 43 characters of
// the base64url alphabet.
func validS256Challenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	_, err := b64.DecodeString(c)
	return err == nil
}

// oauthError is the RFC 6749 §5.2 error body.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// writeJSON writes v as JSON with the given status and no-store caching.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Pragma", "no-cache")
	writeJSONCache(w, status, v, "no-store")
}

// writeJSONCache writes v as JSON with the given status and Cache-Control value.
func writeJSONCache(w http.ResponseWriter, status int, v any, cacheControl string) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", cacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, oauthError{Error: code, Description: desc})
}

// singleValues rejects repeated parameters (RFC 6749 §3.1: parameters MUST NOT be included
// more than once) and returns the first offending name.
func repeatedParam(v url.Values) string {
	for k, vs := range v {
		if len(vs) > 1 {
			return k
		}
	}
	return ""
}

// appendQuery adds params to a validated redirect URI, keeping its own query intact (RFC 6749
// §3.1.2: the query component must be retained).
func appendQuery(redirectURI string, params url.Values) string {
	sep := "?"
	if strings.Contains(redirectURI, "?") {
		sep = "&"
		if strings.HasSuffix(redirectURI, "?") || strings.HasSuffix(redirectURI, "&") {
			sep = ""
		}
	}
	return redirectURI + sep + params.Encode()
}

// cors sets the CORS headers of the public JSON endpoints. They never read cookies or ambient
// credentials, so any origin may call them (browser-based MCP clients need this).
func cors(w http.ResponseWriter, methods string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", methods)
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
	h.Set("Access-Control-Max-Age", "86400")
	h.Add("Vary", "Origin")
}

// methodNotAllowed answers a JSON 405.
func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "method not allowed; use "+allow)
}

// corsPost answers CORS and method checks for a browser-callable POST endpoint: it sets the
// CORS headers, answers a preflight OPTIONS with 204 and any other method but POST with 405.
// It reports whether the caller should go on serving the POST.
func corsPost(w http.ResponseWriter, r *http.Request) bool {
	cors(w, "POST, OPTIONS")
	switch r.Method {
	case http.MethodPost:
		return true
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w, "POST, OPTIONS")
	}
	return false
}
