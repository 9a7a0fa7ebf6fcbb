package oauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/session"
)

// Consent cookie format (version 1):
//
//	"1." kid "." base64url(entries) "." base64url(HMAC-SHA256(key, label 0x00 "1." kid "." entries-b64))
//
// where key = ring.MACKey(consentMACLabel) and entries is a sequence of 24-byte entries:
// the first 16 bytes of SHA-256(client_id 0x00 redirect-key) and the approval time (unix
// seconds, big endian). At most maxConsentEntries entries are kept, newest last, so the cookie
// stays well under 1 KiB whatever the URIs' lengths.
const (
	consentMACLabel   = "oauth/consent-cookie/v1"
	csrfMACLabel      = "oauth/consent-csrf/v1"
	maxConsentEntries = 10
	consentEntrySize  = 24
	maxCookieLen      = 1024
)

// cookieNames holds the cookie names and whether they are Secure.
type cookieNames struct {
	prefix string
	secure bool
}

// newCookieNames picks "__Host-" cookies (Secure, Path=/, no Domain). Browsers treat
// http://127.0.0.1 and http://localhost as potentially trustworthy, so Secure cookies work on a
// loopback http public URL too (checked with headless Chromium in the e2e tests).
func newCookieNames(origin *url.URL) cookieNames {
	_ = origin
	return cookieNames{prefix: "__Host-", secure: true}
}

func (c cookieNames) consent() string { return c.prefix + "mcpgate-consent" }

// flow is the name of the cookie binding one pending authorization to the browser that
// started it. The name is derived from the pending id, so that several flows may run at once.
func (c cookieNames) flow(pendingID string) string {
	return c.flowPrefix() + hashKey("oauth/flow-name", pendingID)[:16]
}

func (c cookieNames) flowPrefix() string { return c.prefix + "mcpgate-flow-" }

func (c cookieNames) cookie(name, value string, maxAge time.Duration) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   int(maxAge / time.Second),
		Secure:   c.secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

func (c cookieNames) clear(name string) *http.Cookie {
	ck := c.cookie(name, "", 0)
	ck.MaxAge = -1
	return ck
}

// consentEntry is one remembered consent.
type consentEntry struct {
	key [16]byte
	at  int64 // unix seconds
}

// consentKey identifies a (client, redirect URI) pair. The port of a loopback redirect URI is
// left out: native apps listen on a new port on every run (RFC 8252 §7.3), and the port carries
// no meaning for the user.
func consentKey(clientID, redirectURI string) [16]byte {
	h := sha256.New()
	h.Write([]byte(clientID))
	h.Write([]byte{0})
	h.Write([]byte(redirectKey(redirectURI)))
	var k [16]byte
	copy(k[:], h.Sum(nil))
	return k
}

// redirectKey drops the port of an http loopback redirect URI.
func redirectKey(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "http" || !isLoopbackHost(u.Hostname()) || u.Port() == "" {
		return uri
	}
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	u.Host = host
	return u.String()
}

func consentMAC(key []byte, signed string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(consentMACLabel))
	m.Write([]byte{0})
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// encodeConsent signs entries into a cookie value.
func encodeConsent(ring *session.Ring, entries []consentEntry) string {
	kid, key := ring.MACKey(consentMACLabel)
	buf := make([]byte, 0, len(entries)*consentEntrySize)
	for _, e := range entries {
		buf = append(buf, e.key[:]...)
		buf = binary.BigEndian.AppendUint64(buf, uint64(e.at))
	}
	signed := "1." + kid + "." + b64.EncodeToString(buf)
	return signed + "." + b64.EncodeToString(consentMAC(key, signed))
}

// parseConsent checks and decodes a consent cookie value. Anything malformed, unsigned, signed
// by an unknown key or tampered with yields no entries (and false).
func parseConsent(ring *session.Ring, value string) ([]consentEntry, bool) {
	if value == "" || len(value) > maxCookieLen {
		return nil, false
	}
	last := strings.LastIndexByte(value, '.')
	if last < 0 {
		return nil, false
	}
	signed, macB64 := value[:last], value[last+1:]
	parts := strings.Split(signed, ".")
	if len(parts) != 3 || parts[0] != "1" || parts[1] == "" {
		return nil, false
	}
	key, ok := ring.MACKeyFor(parts[1], consentMACLabel)
	if !ok {
		return nil, false
	}
	mac, err := b64.DecodeString(macB64)
	if err != nil || len(mac) != sha256.Size {
		return nil, false
	}
	if !hmac.Equal(mac, consentMAC(key, signed)) {
		return nil, false
	}
	raw, err := b64.DecodeString(parts[2])
	if err != nil || len(raw)%consentEntrySize != 0 || len(raw) > maxConsentEntries*consentEntrySize {
		return nil, false
	}
	entries := make([]consentEntry, 0, len(raw)/consentEntrySize)
	for i := 0; i < len(raw); i += consentEntrySize {
		var e consentEntry
		copy(e.key[:], raw[i:i+16])
		e.at = int64(binary.BigEndian.Uint64(raw[i+16 : i+24]))
		entries = append(entries, e)
	}
	return entries, true
}

// hasConsent reports whether entries hold a consent for key given at most ttl before now.
func hasConsent(entries []consentEntry, key [16]byte, now time.Time, ttl time.Duration) bool {
	for _, e := range entries {
		if subtle.ConstantTimeCompare(e.key[:], key[:]) == 1 && now.Sub(time.Unix(e.at, 0)) < ttl && e.at <= now.Unix()+60 {
			return true
		}
	}
	return false
}

// addConsent returns entries with key approved at now: expired entries and an older entry for
// the same key are dropped, and only the newest maxConsentEntries are kept.
func addConsent(entries []consentEntry, key [16]byte, now time.Time, ttl time.Duration) []consentEntry {
	out := slices.DeleteFunc(slices.Clone(entries), func(e consentEntry) bool {
		return e.key == key || now.Sub(time.Unix(e.at, 0)) >= ttl
	})
	out = append(out, consentEntry{key: key, at: now.Unix()})
	if len(out) > maxConsentEntries {
		out = out[len(out)-maxConsentEntries:]
	}
	return out
}

// consentEntries reads the request's consent cookie (none, or an invalid one, is empty).
func (s *Server) consentEntries(r *http.Request, ring *session.Ring) []consentEntry {
	c, err := r.Cookie(s.cookies.consent())
	if err != nil {
		return nil
	}
	entries, _ := parseConsent(ring, c.Value)
	return entries
}

// csrfToken is the consent form's CSRF token: an HMAC, under a key derived from the session
// ring, of the pending authorization id (itself random, single use, and bound to the browser
// by the flow cookie). Format: kid "." base64url(mac).
func csrfToken(ring *session.Ring, pendingID string) string {
	kid, key := ring.MACKey(csrfMACLabel)
	return kid + "." + b64.EncodeToString(csrfMAC(key, pendingID))
}

func csrfMAC(key []byte, pendingID string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(csrfMACLabel))
	m.Write([]byte{0})
	m.Write([]byte(pendingID))
	return m.Sum(nil)
}

// checkCSRF verifies a CSRF token for pendingID in constant time.
func checkCSRF(ring *session.Ring, pendingID, token string) bool {
	if len(token) > 128 {
		return false
	}
	kid, macB64, ok := strings.Cut(token, ".")
	if !ok {
		return false
	}
	key, ok := ring.MACKeyFor(kid, csrfMACLabel)
	if !ok {
		return false
	}
	mac, err := b64.DecodeString(macB64)
	if err != nil {
		return false
	}
	return hmac.Equal(mac, csrfMAC(key, pendingID))
}
