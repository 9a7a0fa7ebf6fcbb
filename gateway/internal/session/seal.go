package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Purpose names what a sealed token is for. It is bound into every token as AES-GCM
// associated data, so a token sealed for one purpose never opens for another.
type Purpose string

// Purposes used by the gateway.
const (
	// PurposeAccess seals OAuth access tokens (the MCP client's bearer token).
	PurposeAccess Purpose = "mcpgate/access/v1"
	// PurposeRefresh seals OAuth refresh tokens.
	PurposeRefresh Purpose = "mcpgate/refresh/v1"
	// PurposeState seals short-lived flow state (for example cookies).
	PurposeState Purpose = "mcpgate/state/v1"
)

// ErrInvalidToken is the one error Open returns for every failure (malformed, unknown key,
// tampered, wrong purpose, expired, too long), so callers cannot become an oracle.
var ErrInvalidToken = errors.New("invalid token")

const (
	tokenVersion = 0x01
	nonceSize    = 12
	tagSize      = 16
	expirySize   = 8
	// MaxTokenLen is the longest token (in characters) that Open accepts and Seal produces.
	MaxTokenLen = 4096
	maxADLen    = 128 + 2 + maxKIDLen + nonceSize
)

// b64 is strict so that every token has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// Seal encrypts payload for purpose p with the active key and returns a compact URL-safe token:
//
//	base64url( 0x01 | len(kid) | kid | nonce(12) | AES-256-GCM(expiry(8, unix ms) | payload) )
//
// with associated data purpose | 0x00 | header (everything before the ciphertext). The nonce is
// random for every call, so sealing the same payload twice gives different tokens.
func (r *Ring) Seal(p Purpose, payload []byte, expiry time.Time) (string, error) {
	if err := validPurpose(p); err != nil {
		return "", err
	}
	k := r.active
	hdrLen := 2 + len(k.ID) + nonceSize
	rawLen := hdrLen + expirySize + len(payload) + tagSize
	if b64.EncodedLen(rawLen) > MaxTokenLen {
		return "", fmt.Errorf("seal: payload of %d bytes is too long for a token", len(payload))
	}
	buf := make([]byte, hdrLen, rawLen)
	buf[0] = tokenVersion
	buf[1] = byte(len(k.ID))
	copy(buf[2:], k.ID)
	nonce := buf[2+len(k.ID) : hdrLen]
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: nonce: %w", err)
	}
	pt := make([]byte, expirySize+len(payload))
	binary.BigEndian.PutUint64(pt, uint64(expiry.UnixMilli()))
	copy(pt[expirySize:], payload)
	var adBuf [maxADLen]byte
	ad := appendAD(adBuf[:0], p, buf[:hdrLen])
	buf = k.aead.Seal(buf, nonce, pt, ad)
	return b64.EncodeToString(buf), nil
}

// Open checks and decrypts a token sealed for purpose p by any key of the ring (next, active or
// retired) and returns its payload. Every failure, including expiry at or before now, returns
// ErrInvalidToken and nothing else.
func (r *Ring) Open(p Purpose, token string, now time.Time) ([]byte, error) {
	if len(token) > MaxTokenLen || len(p) > 128 {
		return nil, ErrInvalidToken
	}
	// One allocation holds the decoded token followed by the associated data; the plaintext is
	// decrypted in place.
	dl := b64.DecodedLen(len(token))
	buf := make([]byte, dl+len(p)+1+2+maxKIDLen+nonceSize)
	n, err := b64.Decode(buf[:dl], []byte(token))
	if err != nil {
		return nil, ErrInvalidToken
	}
	raw := buf[:n]
	if len(raw) < 2 || raw[0] != tokenVersion {
		return nil, ErrInvalidToken
	}
	kl := int(raw[1])
	hdrLen := 2 + kl + nonceSize
	if kl == 0 || kl > maxKIDLen || len(raw) < hdrLen+expirySize+tagSize {
		return nil, ErrInvalidToken
	}
	k, ok := r.byID[string(raw[2:2+kl])]
	if !ok {
		return nil, ErrInvalidToken
	}
	ad := appendAD(buf[dl:dl], p, raw[:hdrLen])
	pt, err := k.aead.Open(raw[hdrLen:hdrLen], raw[2+kl:hdrLen], raw[hdrLen:], ad)
	if err != nil {
		return nil, ErrInvalidToken
	}
	exp := int64(binary.BigEndian.Uint64(pt))
	if now.UnixMilli() >= exp {
		return nil, ErrInvalidToken
	}
	return pt[expirySize:], nil
}

func validPurpose(p Purpose) error {
	if p == "" || len(p) > 128 {
		return fmt.Errorf("seal: purpose must be 1 to 128 bytes")
	}
	for i := 0; i < len(p); i++ {
		if p[i] == 0 {
			return fmt.Errorf("seal: purpose must not contain NUL")
		}
	}
	return nil
}

func appendAD(dst []byte, p Purpose, hdr []byte) []byte {
	dst = append(dst, p...)
	dst = append(dst, 0)
	return append(dst, hdr...)
}

// MACKey derives a 32-byte MAC key for label (for example "consent-cookie" or "csrf") from the
// active key with HKDF-SHA256, and returns it with the active key's id. Carry the kid along
// with the MAC so that MACKeyFor can verify it after a rotation.
func (r *Ring) MACKey(label string) (kid string, key []byte) {
	return r.active.ID, deriveMAC(r.active.Secret, label)
}

// MACKeyFor derives the MAC key for label from the key kid (any state), for verifying a MAC
// made under an older or newer key. It reports false if the ring has no such key.
func (r *Ring) MACKeyFor(kid, label string) ([]byte, bool) {
	k, ok := r.byID[kid]
	if !ok {
		return nil, false
	}
	return deriveMAC(k.Secret, label), true
}

func deriveMAC(secret []byte, label string) []byte {
	key, err := hkdf.Key(sha256.New, secret, nil, "mcpgate/mac/v1\x00"+label, 32)
	if err != nil {
		// Only possible for an output length above 255*32 bytes.
		panic("session: hkdf: " + err.Error())
	}
	return key
}

// NewDataKey returns a fresh random 32-byte data key (one per session).
func NewDataKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("generate data key: %w", err)
	}
	return k, nil
}

// Wrap encrypts plaintext under a 32-byte data key with AES-256-GCM, a random nonce and the
// associated data ad. The result is nonce | ciphertext | tag.
func Wrap(dataKey, plaintext, ad []byte) ([]byte, error) {
	aead, err := dataAEAD(dataKey)
	if err != nil {
		return nil, err
	}
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+tagSize)
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("wrap: nonce: %w", err)
	}
	return aead.Seal(out, out[:nonceSize], plaintext, ad), nil
}

// ErrUnwrap is returned by Unwrap when the ciphertext does not open with the key and ad.
var ErrUnwrap = errors.New("unwrap: ciphertext does not open")

// Unwrap reverses Wrap. Any mismatch (key, associated data, tampering) returns ErrUnwrap.
func Unwrap(dataKey, ciphertext, ad []byte) ([]byte, error) {
	aead, err := dataAEAD(dataKey)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < nonceSize+tagSize {
		return nil, ErrUnwrap
	}
	pt, err := aead.Open(nil, ciphertext[:nonceSize], ciphertext[nonceSize:], ad)
	if err != nil {
		return nil, ErrUnwrap
	}
	return pt, nil
}

func dataAEAD(dataKey []byte) (cipher.AEAD, error) {
	if len(dataKey) != KeySize {
		return nil, fmt.Errorf("data key is %d bytes, want %d", len(dataKey), KeySize)
	}
	block, err := aes.NewCipher(dataKey)
	if err != nil {
		return nil, fmt.Errorf("data key: %w", err)
	}
	return cipher.NewGCM(block)
}
