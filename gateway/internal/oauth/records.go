package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// Record kinds. Each record is stored under mcpgate:oauth:<kind>:<hex SHA-256 of the random
// secret that names it>, encrypted (AES-256-GCM via session.Wrap) under a key derived from the
// same secret. The secret itself (a pending-authorization id, an upstream state, an
// authorization code) is never stored, so a dump of the store reveals neither the secrets nor
// what they protect (upstream tokens, PKCE verifiers, identities).
const (
	kindPending = "authz"    // pending authorization, waiting for consent
	kindState   = "state"    // upstream state, waiting for the IdP callback
	kindCode    = "code"     // our authorization code, waiting for /token
	kindUsed    = "usedcode" // tombstone of a redeemed code: code hash → grant id
)

// errRecordNotFound means the record does not exist, expired, was used, or does not open.
var errRecordNotFound = errors.New("oauth: record not found")

// pendingAuth is a validated authorization request.
type pendingAuth struct {
	ClientID    string `json:"client_id"`
	RedirectURI string `json:"redirect_uri"`
	Challenge   string `json:"code_challenge"`
	Resource    string `json:"resource"`
	Scope       string `json:"scope"`
	State       string `json:"state,omitempty"`
	// FlowCookie names the cookie binding the flow to the browser; Binding is the hash of
	// its value.
	FlowCookie string `json:"flow_cookie"`
	Binding    string `json:"binding"`
	// Created is when /authorize accepted the request (Unix seconds). It fixes the flow's
	// deadline, Created + StateTTL, shared by the flow cookie and every record of the flow.
	Created int64 `json:"created"`
}

// upstreamState is a pending authorization sent to the IdP: our state maps to it.
type upstreamState struct {
	pendingAuth
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
}

// codeRecord is what an authorization code stands for.
type codeRecord struct {
	ClientID    string          `json:"client_id"`
	RedirectURI string          `json:"redirect_uri"`
	Challenge   string          `json:"code_challenge"`
	Resource    string          `json:"resource"`
	Scope       string          `json:"scope"`
	User        identity.User   `json:"user"`
	Tokens      identity.Tokens `json:"tokens"`
	// Issued is when the code was issued (Unix seconds): the code expires at Issued + CodeTTL.
	Issued int64 `json:"issued"`
}

// minRecordTTL is the shortest lifetime a record is written with: a flow or code with less
// left is treated as expired.
const minRecordTTL = time.Second

// remainingTTL is what is left now of a lifetime ttl that began at the Unix second start, or
// 0 when less than minRecordTTL is left. start is rounded down, so a record written with the
// result never outlives the original deadline (nor, for a flow, its cookie, set at or after
// start with Max-Age = StateTTL).
func (s *Server) remainingTTL(start int64, ttl time.Duration) time.Duration {
	left := time.Unix(start, 0).Add(ttl).Sub(s.now())
	if left < minRecordTTL {
		return 0
	}
	return left
}

// flowTTL is the lifetime left to the authorization p (0 when it has expired): the records
// written after /authorize get this, not a fresh StateTTL, so that no record of a flow
// outlives its flow cookie.
func (s *Server) flowTTL(p *pendingAuth) time.Duration {
	return s.remainingTTL(p.Created, s.stateTTL)
}

func recordID(kind, secret string) string { return hashKey("oauth/"+kind+"/id", secret) }

func recordStoreKey(kind, secret string) string {
	return store.Key("oauth", kind, recordID(kind, secret))
}

func recordKey(kind, secret string) []byte {
	sum := sha256.Sum256([]byte("oauth/" + kind + "/key\x00" + secret))
	return sum[:]
}

// putRecord encrypts v and stores it for ttl (which must be positive: a record never lives
// forever).
func (s *Server) putRecord(ctx context.Context, kind, secret string, v any, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("store %s record: no lifetime left (%s)", kind, ttl)
	}
	pt, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s record: %w", kind, err)
	}
	ct, err := session.Wrap(recordKey(kind, secret), pt, []byte(kind))
	if err != nil {
		return fmt.Errorf("encrypt %s record: %w", kind, err)
	}
	if err := s.st.Set(ctx, recordStoreKey(kind, secret), ct, ttl); err != nil {
		return fmt.Errorf("store %s record: %w", kind, err)
	}
	return nil
}

// getRecord reads (take=false) or takes once (take=true, GETDEL) the record named by secret.
// A missing, expired, used or undecryptable record is errRecordNotFound; other errors mean
// the store is failing.
func (s *Server) getRecord(ctx context.Context, kind, secret string, take bool, v any) error {
	if secret == "" || len(secret) > 512 {
		return errRecordNotFound
	}
	var (
		ct  []byte
		err error
	)
	if take {
		ct, err = s.st.GetDel(ctx, recordStoreKey(kind, secret))
	} else {
		ct, err = s.st.Get(ctx, recordStoreKey(kind, secret))
	}
	if errors.Is(err, store.ErrNotFound) {
		return errRecordNotFound
	}
	if err != nil {
		return fmt.Errorf("load %s record: %w", kind, err)
	}
	pt, err := session.Unwrap(recordKey(kind, secret), ct, []byte(kind))
	if err != nil {
		return errRecordNotFound
	}
	if err := json.Unmarshal(pt, v); err != nil {
		return errRecordNotFound
	}
	return nil
}
