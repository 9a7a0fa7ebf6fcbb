package grants

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// Token payloads are a small binary encoding (no reflection on the hot path):
//
//	access:  'A' | field(grant id) | field(data key) | field(resource) | field(scope) | field(client id)
//	refresh: 'R' | field(grant id) | field(data key) | field(client id) | field(rotation secret) | uvarint(generation)
//
// where field(x) = uvarint(len(x)) | x. The expiry lives in the sealed envelope (session.Ring.Seal).

const (
	kindAccess  = 'A'
	kindRefresh = 'R'
	// rotationSecretSize is the size of the random secret each refresh token carries; it keys
	// the stored copy of the token set that refresh produced (see lastKey).
	rotationSecretSize = 16
)

var errPayload = errors.New("grants: malformed token payload")

type accessClaims struct {
	grantID  []byte
	dataKey  []byte
	resource []byte
	scope    []byte
	clientID []byte
}

type refreshClaims struct {
	grantID  []byte
	dataKey  []byte
	clientID []byte
	secret   []byte
	gen      uint64
}

func appendField(b []byte, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// uvarint decodes a minimally encoded uvarint (k ≤ 0 on error), so that every payload has
// exactly one encoding.
func uvarint(b []byte) (uint64, int) {
	v, k := binary.Uvarint(b)
	if k > 0 && k != uvarintLen(v) {
		return 0, -1
	}
	return v, k
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func readField(b []byte) (field, rest []byte, err error) {
	n, k := uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, errPayload
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

func (c accessClaims) marshal() []byte {
	b := make([]byte, 0, 8+len(c.grantID)+len(c.dataKey)+len(c.resource)+len(c.scope)+len(c.clientID))
	b = append(b, kindAccess)
	for _, f := range [][]byte{c.grantID, c.dataKey, c.resource, c.scope, c.clientID} {
		b = appendField(b, f)
	}
	return b
}

func parseAccess(b []byte) (c accessClaims, err error) {
	if len(b) == 0 || b[0] != kindAccess {
		return c, errPayload
	}
	b = b[1:]
	for _, f := range []*[]byte{&c.grantID, &c.dataKey, &c.resource, &c.scope, &c.clientID} {
		if *f, b, err = readField(b); err != nil {
			return c, err
		}
	}
	if len(b) != 0 || len(c.dataKey) != 32 || len(c.grantID) == 0 {
		return c, errPayload
	}
	return c, nil
}

func (c refreshClaims) marshal() []byte {
	b := make([]byte, 0, 16+len(c.grantID)+len(c.dataKey)+len(c.clientID)+len(c.secret))
	b = append(b, kindRefresh)
	for _, f := range [][]byte{c.grantID, c.dataKey, c.clientID, c.secret} {
		b = appendField(b, f)
	}
	return binary.AppendUvarint(b, c.gen)
}

func parseRefresh(b []byte) (c refreshClaims, err error) {
	if len(b) == 0 || b[0] != kindRefresh {
		return c, errPayload
	}
	b = b[1:]
	for _, f := range []*[]byte{&c.grantID, &c.dataKey, &c.clientID, &c.secret} {
		if *f, b, err = readField(b); err != nil {
			return c, err
		}
	}
	gen, k := uvarint(b)
	if k <= 0 || k != len(b) || len(c.dataKey) != 32 || len(c.grantID) == 0 || len(c.secret) != rotationSecretSize {
		return c, errPayload
	}
	c.gen = gen
	return c, nil
}

// keyCheck is stored in the record to check that a token's data key belongs to the grant.
// The data key is 256 random bits, so its hash reveals nothing.
func keyCheck(dataKey []byte) [16]byte {
	h := sha256.New()
	h.Write([]byte("mcpgate/grant-key-check/v1\x00"))
	h.Write(dataKey)
	var out [16]byte
	copy(out[:], h.Sum(nil))
	return out
}

// lastKey is the key under which the token set produced by a refresh is stored for the grace
// window: only the holder of the refresh token that was consumed (data key and its rotation
// secret) can read it — not a Redis dump, and not a holder of an access token.
func lastKey(dataKey, secret []byte) []byte {
	h := sha256.New()
	h.Write([]byte("mcpgate/grant-last/v1\x00"))
	h.Write(dataKey)
	h.Write(secret)
	return h.Sum(nil)
}
