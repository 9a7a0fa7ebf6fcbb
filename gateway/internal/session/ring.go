// Package session holds the gateway's session cryptography: the session-key ring (one active
// key seals, next/active/retired keys open), sealed tokens (AES-256-GCM with a random nonce, a
// key id, an expiry and a purpose bound as associated data), HKDF-derived MAC keys for cookies
// and CSRF tokens, per-session data keys, and a Keeper that reloads the ring. It does no I/O of
// its own: the Keeper is handed a load function.
package session

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// KeyState is the life-cycle state of a key in the ring.
type KeyState string

// Key states. Only the active key seals; all three open.
const (
	// StateNext is a key that has been published but does not seal yet. Every replica learns
	// it (at least one reload interval) before it is promoted, so tokens it seals open everywhere.
	StateNext KeyState = "next"
	// StateActive is the one key that seals new tokens.
	StateActive KeyState = "active"
	// StateRetired is a former active key kept so that tokens it sealed still open.
	StateRetired KeyState = "retired"
)

// KeySize is the size in bytes of every ring key (AES-256).
const KeySize = 32

// maxKIDLen bounds a key id (it travels inside every token).
const maxKIDLen = 32

// Key is one entry of the session-key ring.
type Key struct {
	// ID is the key id carried in every token sealed with this key.
	ID string `json:"kid"`
	// Secret is the 32-byte AES-256 key (base64 in JSON).
	Secret []byte `json:"key"`
	// State is next, active or retired.
	State KeyState `json:"state"`
	// Created is when the key was generated.
	Created time.Time `json:"created"`
	// Retired is when the key stopped being active (zero unless State is retired and the
	// key was retired by Promote); DropRetired uses it, falling back to Created.
	Retired time.Time `json:"retired,omitzero"`
}

// ringDoc is the JSON document: {"keys":[...]}.
type ringDoc struct {
	Keys []Key `json:"keys"`
}

// ringKey is a key with its cached AEAD.
type ringKey struct {
	Key
	aead cipher.AEAD
}

// Ring is an immutable, validated set of session keys with exactly one active key. It is safe
// for concurrent use. Build one with ParseRing or NewRing; the With/Promote/Drop helpers return
// new rings.
type Ring struct {
	keys   []*ringKey          // in document order
	byID   map[string]*ringKey // kid → key
	active *ringKey
}

// NewRing validates keys and builds a ring: exactly one active key, 32-byte secrets, unique
// key ids of 1–32 characters from [A-Za-z0-9_-].
func NewRing(keys ...Key) (*Ring, error) {
	r := &Ring{byID: make(map[string]*ringKey, len(keys))}
	for i, k := range keys {
		if err := validKID(k.ID); err != nil {
			return nil, fmt.Errorf("session key #%d: %w", i+1, err)
		}
		if len(k.Secret) != KeySize {
			return nil, fmt.Errorf("session key %q: key is %d bytes, want %d", k.ID, len(k.Secret), KeySize)
		}
		switch k.State {
		case StateNext, StateActive, StateRetired:
		default:
			return nil, fmt.Errorf("session key %q: state %q is not next, active or retired", k.ID, k.State)
		}
		if _, dup := r.byID[k.ID]; dup {
			return nil, fmt.Errorf("session key %q: duplicate kid", k.ID)
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("session key %q: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("session key %q: %w", k.ID, err)
		}
		k.Secret = bytes.Clone(k.Secret)
		rk := &ringKey{Key: k, aead: aead}
		if k.State == StateActive {
			if r.active != nil {
				return nil, fmt.Errorf("session key ring: more than one active key (%q and %q)", r.active.ID, k.ID)
			}
			r.active = rk
		}
		r.keys = append(r.keys, rk)
		r.byID[k.ID] = rk
	}
	if r.active == nil {
		return nil, errors.New("session key ring: no active key")
	}
	return r, nil
}

func validKID(kid string) error {
	if kid == "" || len(kid) > maxKIDLen {
		return fmt.Errorf("kid must be 1 to %d characters", maxKIDLen)
	}
	for i := 0; i < len(kid); i++ {
		c := kid[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("kid %q: only letters, digits, '-' and '_' are allowed", kid)
		}
	}
	return nil
}

// ParseRing parses and validates the ring document
// {"keys":[{"kid","key"(base64, 32 bytes),"state","created"}]}. Errors name the offending key
// id but never include key material.
func ParseRing(doc []byte) (*Ring, error) {
	var d ringDoc
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("parse session key ring: %w", sanitizeJSONErr(err))
	}
	if dec.More() {
		return nil, errors.New("parse session key ring: trailing data after the JSON document")
	}
	r, err := NewRing(d.Keys...)
	if err != nil {
		return nil, fmt.Errorf("parse session key ring: %w", err)
	}
	return r, nil
}

// sanitizeJSONErr drops error texts that could echo key material (base64 errors quote input
// offsets only, but syntax errors are kept generic to be safe).
func sanitizeJSONErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: unexpected end of input")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at offset %d", se.Offset)
	}
	var ce base64.CorruptInputError
	if errors.As(err, &ce) {
		return errors.New(`a "key" is not valid base64`)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %q has the wrong type", te.Field)
	}
	return err
}

// Marshal renders the ring as its JSON document (it contains the secrets: store it as one).
func (r *Ring) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(ringDoc{Keys: r.Keys()}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal session key ring: %w", err)
	}
	return append(b, '\n'), nil
}

// Keys returns a copy of the ring's keys in document order.
func (r *Ring) Keys() []Key {
	out := make([]Key, len(r.keys))
	for i, k := range r.keys {
		out[i] = k.Key
		out[i].Secret = bytes.Clone(k.Secret)
	}
	return out
}

// ActiveID returns the key id of the active key.
func (r *Ring) ActiveID() string { return r.active.ID }

// NewKey generates a key in the given state with a random 12-character key id and a random
// 32-byte secret.
func NewKey(state KeyState, now time.Time) (Key, error) {
	id := make([]byte, 9)
	secret := make([]byte, KeySize)
	if _, err := rand.Read(id); err != nil {
		return Key{}, fmt.Errorf("generate key id: %w", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	return Key{ID: base64.RawURLEncoding.EncodeToString(id), Secret: secret, State: state, Created: now.UTC().Truncate(time.Second)}, nil
}

// WithKey returns a new ring with k added. k must be next or retired (an active key is
// introduced by adding it as next and promoting it, so that every replica learns it first).
func (r *Ring) WithKey(k Key) (*Ring, error) {
	if k.State == StateActive {
		return nil, fmt.Errorf("add session key %q: add it as %q and promote it later", k.ID, StateNext)
	}
	return NewRing(append(r.Keys(), k)...)
}

// Promote returns a new ring in which kid (a next or retired key) is active and the former
// active key is retired as of now.
func (r *Ring) Promote(kid string, now time.Time) (*Ring, error) {
	if _, ok := r.byID[kid]; !ok {
		return nil, fmt.Errorf("promote session key %q: no such key", kid)
	}
	if r.active.ID == kid {
		return r, nil
	}
	keys := r.Keys()
	for i := range keys {
		switch {
		case keys[i].ID == kid:
			keys[i].State = StateActive
			keys[i].Retired = time.Time{}
		case keys[i].State == StateActive:
			keys[i].State = StateRetired
			keys[i].Retired = now.UTC().Truncate(time.Second)
		}
	}
	return NewRing(keys...)
}

// DropRetired returns a new ring without the retired keys that were retired (or, if that time
// is unknown, created) before olderThan, and the ids of the dropped keys.
func (r *Ring) DropRetired(olderThan time.Time) (*Ring, []string, error) {
	var dropped []string
	keys := slices.DeleteFunc(r.Keys(), func(k Key) bool {
		if k.State != StateRetired {
			return false
		}
		t := k.Retired
		if t.IsZero() {
			t = k.Created
		}
		if t.Before(olderThan) {
			dropped = append(dropped, k.ID)
			return true
		}
		return false
	})
	nr, err := NewRing(keys...)
	if err != nil {
		return nil, nil, err
	}
	return nr, dropped, nil
}
