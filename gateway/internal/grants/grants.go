// Package grants manages OAuth grants (sessions): the OAuth server issues, refreshes and revokes
// them; the MCP proxy verifies them on every call. A grant record lives in the store with the
// upstream tokens encrypted under the grant's own data key, which travels only inside the
// sealed access and refresh tokens, so a dump of the store reveals no upstream token.
//
// See docs/sessions.md for the token formats, the store layout and the cache semantics.
package grants

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"golang.org/x/sync/singleflight"
)

// Errors returned by the Manager. Other errors wrap one of these or, for Refresh, the
// RefreshFunc's error.
var (
	// ErrInvalidToken: the access token does not open, has expired, its grant is gone, or it
	// is not good for the resource. Answer 401 invalid_token (always the same body).
	ErrInvalidToken = errors.New("grants: invalid token")
	// ErrInvalidGrant: a refresh token is invalid, expired, replayed or bound to another
	// client (or, for RevokeToken, the token belongs to another client). Answer 400
	// invalid_grant (RevokeToken: unauthorized_client).
	ErrInvalidGrant = errors.New("grants: invalid grant")
	// ErrUnavailable: the store cannot be reached, so nothing can be verified or changed.
	// Answer 503 (fail closed).
	ErrUnavailable = errors.New("grants: store unavailable")
)

// RevokedChannel is the pub/sub channel on which revoked grant ids are published.
var RevokedChannel = store.Key("grants", "revoked")

// Defaults for Options.
const (
	DefaultAccessTTL    = time.Hour
	DefaultRefreshTTL   = 30 * 24 * time.Hour
	DefaultRefreshGrace = 30 * time.Second
	// DefaultLookupTimeout bounds a grant read from the store on a cache miss.
	DefaultLookupTimeout = 750 * time.Millisecond
	// MaxCacheTTL is the longest a replica trusts a cached grant.
	MaxCacheTTL = time.Second
	// maxCacheEntries bounds the per-replica cache.
	maxCacheEntries = 100_000
	// rotateLockTTL bounds how long one refresh may hold a grant's rotation lock.
	rotateLockTTL = 30 * time.Second
	// rotateTimeout bounds one rotation (the upstream refresh and the save) once the lock is held.
	rotateTimeout = 20 * time.Second
	// rotateWait bounds how long a concurrent refresh waits for the one holding the lock.
	rotateWait = 5 * time.Second
)

// Grant is one session: who signed in, through which client, for which resource and scope.
// It holds no secret. Treat a *Grant returned by the Manager as read-only.
type Grant struct {
	// ID is the grant id (random, 256 bits, base64url). Log it only through LogID.
	ID string `json:"id"`
	// ClientID is the OAuth client the grant was issued to.
	ClientID string `json:"client_id"`
	// User is the upstream identity.
	User identity.User `json:"user"`
	// Resource is the RFC 8707 resource the tokens are bound to: the public origin when the
	// client asked for none (good on every endpoint), else one endpoint's resource.
	Resource string `json:"resource"`
	// Scope is the granted scope (space separated).
	Scope string `json:"scope,omitempty"`
	// CreatedAt is when the grant was issued; ExpiresAt when it ends unless refreshed (each
	// refresh moves it to now + RefreshTTL).
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// RefreshGen counts refresh-token rotations; the current refresh token has this generation.
	RefreshGen int `json:"refresh_gen"`
	// RefreshedAt is when the grant was last refreshed (zero if never).
	RefreshedAt time.Time `json:"refreshed_at,omitzero"`

	upstream []byte // the record's encrypted upstream tokens (for UpstreamTokens)
	logID    string // LogID(ID), computed once per loaded record
}

// LogID returns the grant's short id for logs and metrics (LogID of its ID).
func (g *Grant) LogID() string {
	if g.logID == "" {
		return LogID(g.ID)
	}
	return g.logID
}

// TokenSet is what the token endpoint returns.
type TokenSet struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	// ExpiresIn is the access token's lifetime in seconds.
	ExpiresIn int    `json:"expires_in"`
	Scope     string `json:"scope,omitempty"`
	// GrantID identifies the grant (to revoke it when a code is replayed; log it via LogID).
	// It is not part of the token response.
	GrantID string `json:"-"`
}

// storedSet is a TokenSet as kept for the refresh grace window.
type storedSet struct {
	AccessToken  string `json:"at"`
	RefreshToken string `json:"rt"`
	ExpiresIn    int    `json:"exp"`
	Scope        string `json:"scope,omitempty"`
}

// Options configures a Manager. Zero values take the defaults.
type Options struct {
	// AccessTTL is the access-token lifetime (default 1 h).
	AccessTTL time.Duration
	// RefreshTTL is the refresh-token lifetime and the grant's idle lifetime (default 30 days).
	RefreshTTL time.Duration
	// RefreshGrace is how long after a rotation the consumed refresh token may be presented
	// again and get the same token set back (default 30 s).
	RefreshGrace time.Duration
	// CacheTTL bounds how long a replica trusts a cached grant (default and maximum 1 s;
	// negative disables the cache).
	CacheTTL time.Duration
	// LookupTimeout bounds Verify's read of a grant from the store on a cache miss (default
	// 750 ms): with the store unreachable a call fails with ErrUnavailable quickly instead of
	// waiting for the store client's own timeouts. A cache hit needs no timer.
	LookupTimeout time.Duration
	// Logger receives operational logs (never secrets). Nil discards.
	Logger *slog.Logger
	// Now is the clock for token and grant expiry (default time.Now).
	Now func() time.Time
}

// Filter selects grants for List. At least one field must be set.
type Filter struct {
	UserID   string
	ClientID string
}

// RefreshFunc refreshes the upstream tokens of a grant during a refresh-token exchange. It
// returns the (possibly updated) user and the new upstream tokens. Returning an error leaves
// the grant unchanged; Refresh returns the error wrapped.
type RefreshFunc func(ctx context.Context, g *Grant, up identity.Tokens) (identity.User, identity.Tokens, error)

// record is what the store holds at mcpgate:grant:{id}.
type record struct {
	Grant
	// KeyCheck ties the record to its data key (see keyCheck).
	KeyCheck []byte `json:"kc"`
	// Upstream is the upstream identity.Tokens as JSON, wrapped under the data key.
	Upstream []byte `json:"up"`
	// Last is the token set the latest refresh returned, wrapped under lastKey, kept for
	// the grace window; LastGen is the generation that refresh consumed, LastAt its time.
	Last    []byte    `json:"last,omitempty"`
	LastGen int       `json:"last_gen,omitempty"`
	LastAt  time.Time `json:"last_at,omitzero"`
}

// fetchedRecord is the result of one shared read of a grant record.
type fetchedRecord struct {
	rec *record
	at  time.Time
}

type cacheEntry struct {
	rec *record
	kc  [16]byte
	at  time.Time
}

// Manager issues, verifies, refreshes and revokes grants. It is safe for concurrent use.
type Manager struct {
	st       store.Store
	keeper   *session.Keeper
	accessT  time.Duration
	refreshT time.Duration
	grace    time.Duration
	cacheTTL time.Duration
	lookupT  time.Duration
	log      *slog.Logger
	now      func() time.Time

	// flight merges concurrent cache misses for the same grant into one Redis read (a burst
	// of calls on one session after its cache entry expires would otherwise each GET it).
	flight singleflight.Group

	mu    sync.RWMutex
	cache map[string]cacheEntry
	up    bool   // the revocation subscription is live: the cache may be used
	epoch uint64 // bumped on every invalidation, so a lookup racing one is not cached
}

// New returns a Manager over st, sealing tokens with keeper's current ring. Call Run once per
// process: until its subscription is up the cache is bypassed.
func New(st store.Store, keeper *session.Keeper, opts Options) *Manager {
	m := &Manager{
		st: st, keeper: keeper,
		accessT: opts.AccessTTL, refreshT: opts.RefreshTTL, grace: opts.RefreshGrace,
		cacheTTL: opts.CacheTTL, lookupT: opts.LookupTimeout, log: opts.Logger, now: opts.Now,
		cache: map[string]cacheEntry{},
	}
	if m.accessT <= 0 {
		m.accessT = DefaultAccessTTL
	}
	if m.refreshT <= 0 {
		m.refreshT = DefaultRefreshTTL
	}
	if m.grace <= 0 {
		m.grace = DefaultRefreshGrace
	}
	if m.lookupT <= 0 {
		m.lookupT = DefaultLookupTimeout
	}
	if m.cacheTTL == 0 || m.cacheTTL > MaxCacheTTL {
		m.cacheTTL = MaxCacheTTL
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

// LogID returns a short hash of a grant id, for logs and metrics.
func LogID(grantID string) string {
	h := sha256.Sum256([]byte(grantID))
	return hex.EncodeToString(h[:6])
}

func grantKey(id string) string { return store.Key("grant", id) }

// hashPart hashes a value that is not ours to choose (a user id from the IdP, a client id that
// may be a URL) before it becomes part of a store key.
func hashPart(s string) string {
	h := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

func userIndex(userID string) string     { return store.Key("grants", "user", hashPart(userID)) }
func clientIndex(clientID string) string { return store.Key("grants", "client", hashPart(clientID)) }

// allIndex is the set of every grant id, for ListAll (`mcpgate sessions list` without a filter).
var allIndex = store.Key("grants", "all")

func upstreamAD(id string) []byte { return []byte("mcpgate/grant-upstream/v1\x00" + id) }

func lastAD(id string, gen int) []byte {
	return []byte("mcpgate/grant-last/v1\x00" + id + "\x00" + strconv.Itoa(gen))
}

// errNoRing is returned (wrapping ErrUnavailable) while the session-key ring is not loaded.
var errNoRing = fmt.Errorf("%w: session key ring not loaded", ErrUnavailable)

// ring returns the current session-key ring, or errNoRing (fail closed).
func (m *Manager) ring() (*session.Ring, error) {
	if r := m.keeper.Ring(); r != nil {
		return r, nil
	}
	return nil, errNoRing
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("grants: random: %w", err)
	}
	return b, nil
}

// Issue creates a grant for g (ID, CreatedAt, ExpiresAt, RefreshGen and RefreshedAt are set
// here; ClientID, User and Resource are required) holding the upstream tokens up, stores it,
// and returns the client's tokens. The token set always has a refresh token; the OAuth layer
// drops it for clients not registered for the refresh_token grant.
func (m *Manager) Issue(ctx context.Context, g Grant, up identity.Tokens) (*TokenSet, error) {
	if g.ClientID == "" || g.Resource == "" || g.User.ID() == "" {
		return nil, errors.New("grants: issue: client id, resource and user are required")
	}
	now := m.now()
	idb, err := randomBytes(32)
	if err != nil {
		return nil, err
	}
	dk, err := session.NewDataKey()
	if err != nil {
		return nil, err
	}
	g.ID = base64.RawURLEncoding.EncodeToString(idb)
	g.CreatedAt, g.ExpiresAt = now.UTC(), now.Add(m.refreshT).UTC()
	g.RefreshGen, g.RefreshedAt = 0, time.Time{}
	rec := &record{Grant: g}
	kc := keyCheck(dk)
	rec.KeyCheck = kc[:]
	if rec.Upstream, err = wrapUpstream(dk, g.ID, up); err != nil {
		return nil, err
	}
	ts, _, err := m.tokens(rec, dk, now)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("grants: issue: %w", err)
	}
	ok, err := m.st.SetNX(ctx, grantKey(g.ID), b, m.refreshT)
	if err != nil {
		return nil, unavailable("store grant", err)
	}
	if !ok {
		return nil, errors.New("grants: issue: grant id collision")
	}
	if err := m.index(ctx, &rec.Grant); err != nil {
		_ = m.st.Del(ctx, grantKey(g.ID))
		return nil, err
	}
	m.log.Info("grant issued", "grant", LogID(g.ID), "client_id", g.ClientID, "user_oid", g.User.ID())
	return ts, nil
}

func (m *Manager) index(ctx context.Context, g *Grant) error {
	if err := m.st.SAdd(ctx, userIndex(g.User.ID()), g.ID, m.refreshT); err != nil {
		return unavailable("index grant", err)
	}
	if err := m.st.SAdd(ctx, clientIndex(g.ClientID), g.ID, m.refreshT); err != nil {
		return unavailable("index grant", err)
	}
	if err := m.st.SAdd(ctx, allIndex, g.ID, m.refreshT); err != nil {
		return unavailable("index grant", err)
	}
	return nil
}

func wrapUpstream(dk []byte, id string, up identity.Tokens) ([]byte, error) {
	pt, err := json.Marshal(up)
	if err != nil {
		return nil, fmt.Errorf("grants: encode upstream tokens: %w", err)
	}
	return session.Wrap(dk, pt, upstreamAD(id))
}

// tokens seals a new access token and a refresh token of generation rec.RefreshGen, and
// returns them with the refresh token's rotation secret.
func (m *Manager) tokens(rec *record, dk []byte, now time.Time) (*TokenSet, []byte, error) {
	ring, err := m.ring()
	if err != nil {
		return nil, nil, err
	}
	accessExp := now.Add(m.accessT)
	if rec.ExpiresAt.Before(accessExp) {
		accessExp = rec.ExpiresAt
	}
	at, err := ring.Seal(session.PurposeAccess, accessClaims{
		grantID: []byte(rec.ID), dataKey: dk, resource: []byte(rec.Resource),
		scope: []byte(rec.Scope), clientID: []byte(rec.ClientID),
	}.marshal(), accessExp)
	if err != nil {
		return nil, nil, fmt.Errorf("grants: seal access token: %w", err)
	}
	secret, err := randomBytes(rotationSecretSize)
	if err != nil {
		return nil, nil, err
	}
	rt, err := ring.Seal(session.PurposeRefresh, refreshClaims{
		grantID: []byte(rec.ID), dataKey: dk, clientID: []byte(rec.ClientID),
		secret: secret, gen: uint64(rec.RefreshGen),
	}.marshal(), rec.ExpiresAt)
	if err != nil {
		return nil, nil, fmt.Errorf("grants: seal refresh token: %w", err)
	}
	return &TokenSet{
		AccessToken: at, RefreshToken: rt, Scope: rec.Scope, GrantID: rec.ID,
		ExpiresIn: int(accessExp.Sub(now).Round(time.Second) / time.Second),
	}, secret, nil
}

// load reads a grant record: (nil, nil) if it does not exist, ErrUnavailable if the store fails.
func (m *Manager) load(ctx context.Context, id string) (*record, error) {
	b, err := m.st.Get(ctx, grantKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("load grant", err)
	}
	rec := &record{}
	if err := json.Unmarshal(b, rec); err != nil {
		return nil, fmt.Errorf("grants: decode grant %s: %w", LogID(id), err)
	}
	if rec.ID != id || len(rec.KeyCheck) != 16 {
		return nil, fmt.Errorf("grants: grant %s: inconsistent record", LogID(id))
	}
	rec.upstream = rec.Upstream
	rec.logID = LogID(id)
	return rec, nil
}

func (m *Manager) save(ctx context.Context, rec *record, now time.Time) (bool, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("grants: encode grant: %w", err)
	}
	ok, err := m.st.SetXX(ctx, grantKey(rec.ID), b, rec.ExpiresAt.Sub(now))
	if err != nil {
		return false, unavailable("store grant", err)
	}
	return ok, nil
}

// Refresh exchanges a refresh token presented by clientID for a new token set, rotating the
// refresh token:
//   - the current generation n is accepted once: it calls refreshUpstream (nil keeps the
//     upstream tokens as they are), moves the grant to n+1 and returns new tokens;
//   - generation n presented again within RefreshGrace of that rotation returns the same
//     token set again (a client retrying a lost response);
//   - any other reuse is a replay: the whole grant is revoked and ErrInvalidGrant returned.
//
// A token of another client, an expired or unknown token or grant gives ErrInvalidGrant; a
// store failure ErrUnavailable; a refreshUpstream failure its error, wrapped (the grant is
// left unchanged, so the client may retry).
func (m *Manager) Refresh(ctx context.Context, refreshToken, clientID string, refreshUpstream RefreshFunc) (*TokenSet, *Grant, error) {
	now := m.now()
	ring, err := m.ring()
	if err != nil {
		return nil, nil, err
	}
	pt, err := ring.Open(session.PurposeRefresh, refreshToken, now)
	if err != nil {
		return nil, nil, ErrInvalidGrant
	}
	c, err := parseRefresh(pt)
	if err != nil {
		return nil, nil, ErrInvalidGrant
	}
	id := string(c.grantID)
	if subtle.ConstantTimeCompare(c.clientID, []byte(clientID)) != 1 {
		m.log.Warn("refresh token presented by another client", "grant", LogID(id), "client_id", clientID)
		return nil, nil, ErrInvalidGrant
	}
	deadline := time.Now().Add(rotateWait)
	for {
		rec, err := m.load(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		if rec == nil || !now.Before(rec.ExpiresAt) || rec.ClientID != clientID {
			return nil, nil, ErrInvalidGrant
		}
		kc := keyCheck(c.dataKey)
		if subtle.ConstantTimeCompare(kc[:], rec.KeyCheck) != 1 {
			return nil, nil, ErrInvalidGrant
		}
		gen := int(c.gen)
		switch {
		case gen == rec.RefreshGen:
			lock := store.Key("grant", id, "rotate", strconv.Itoa(gen))
			ok, err := m.st.SetNX(ctx, lock, []byte{1}, rotateLockTTL)
			if err != nil {
				return nil, nil, unavailable("lock grant", err)
			}
			if ok {
				// Once the lock is held the rotation finishes even if the client goes away:
				// the upstream refresh may already have rotated the IdP's refresh token, and
				// the new one must be saved (bounded well inside the lock's lifetime).
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rotateTimeout)
				ts, g, err := m.rotate(rctx, rec, c, refreshUpstream, now)
				if err != nil {
					_ = m.st.Del(rctx, lock)
				}
				cancel()
				return ts, g, err
			}
			// Another request is rotating this generation right now: wait for its result.
			if time.Now().After(deadline) {
				return nil, nil, unavailable("refresh", errors.New("concurrent refresh did not finish"))
			}
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			now = m.now()
		case gen == rec.RefreshGen-1 && rec.LastGen == gen && len(rec.Last) > 0 && now.Sub(rec.LastAt) <= m.grace:
			pt, err := session.Unwrap(lastKey(c.dataKey, c.secret), rec.Last, lastAD(id, gen))
			if err != nil {
				// Not the token that was consumed (its rotation secret differs): a replay.
				return m.replay(ctx, id, clientID)
			}
			var ss storedSet
			if err := json.Unmarshal(pt, &ss); err != nil {
				return nil, nil, fmt.Errorf("grants: decode last token set: %w", err)
			}
			g := rec.Grant
			return &TokenSet{AccessToken: ss.AccessToken, RefreshToken: ss.RefreshToken, ExpiresIn: ss.ExpiresIn, Scope: ss.Scope, GrantID: id}, &g, nil
		default:
			return m.replay(ctx, id, clientID)
		}
	}
}

func (m *Manager) replay(ctx context.Context, id, clientID string) (*TokenSet, *Grant, error) {
	m.log.Warn("refresh token replayed: revoking the grant", "grant", LogID(id), "client_id", clientID)
	if _, err := m.revoke(ctx, id); err != nil {
		return nil, nil, err
	}
	return nil, nil, ErrInvalidGrant
}

func (m *Manager) rotate(ctx context.Context, rec *record, c refreshClaims, refreshUpstream RefreshFunc, now time.Time) (*TokenSet, *Grant, error) {
	if refreshUpstream != nil {
		upPT, err := session.Unwrap(c.dataKey, rec.Upstream, upstreamAD(rec.ID))
		if err != nil {
			return nil, nil, ErrInvalidGrant
		}
		var up identity.Tokens
		if err := json.Unmarshal(upPT, &up); err != nil {
			return nil, nil, fmt.Errorf("grants: decode upstream tokens: %w", err)
		}
		g := rec.Grant
		user, newUp, err := refreshUpstream(ctx, &g, up)
		if err != nil {
			return nil, nil, fmt.Errorf("grants: refresh upstream: %w", err)
		}
		if user.ID() != rec.User.ID() {
			m.log.Warn("upstream refresh returned another user: revoking the grant", "grant", LogID(rec.ID))
			return m.replay(ctx, rec.ID, rec.ClientID)
		}
		rec.User = user
		if rec.Upstream, err = wrapUpstream(c.dataKey, rec.ID, newUp); err != nil {
			return nil, nil, err
		}
	}
	consumed := rec.RefreshGen
	rec.RefreshGen++
	rec.RefreshedAt = now.UTC()
	rec.ExpiresAt = now.Add(m.refreshT).UTC()
	ts, _, err := m.tokens(rec, c.dataKey, now)
	if err != nil {
		return nil, nil, err
	}
	last, err := json.Marshal(storedSet{AccessToken: ts.AccessToken, RefreshToken: ts.RefreshToken, ExpiresIn: ts.ExpiresIn, Scope: ts.Scope})
	if err != nil {
		return nil, nil, fmt.Errorf("grants: encode token set: %w", err)
	}
	if rec.Last, err = session.Wrap(lastKey(c.dataKey, c.secret), last, lastAD(rec.ID, consumed)); err != nil {
		return nil, nil, err
	}
	rec.LastGen, rec.LastAt = consumed, now.UTC()
	ok, err := m.save(ctx, rec, now)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, ErrInvalidGrant // revoked meanwhile
	}
	if err := m.index(ctx, &rec.Grant); err != nil {
		return nil, nil, err
	}
	m.log.Info("grant refreshed", "grant", LogID(rec.ID), "client_id", rec.ClientID, "generation", rec.RefreshGen)
	g := rec.Grant
	g.upstream = rec.Upstream
	return ts, &g, nil
}

// ResourceAllows reports whether a token bound to tokenResource is good at the endpoint whose
// resource is endpointResource: equal resources, or a token bound to the public origin
// (scheme://host[:port], no path) used at any endpoint of that origin. The SSE message
// endpoint passes the SSE endpoint's resource.
func ResourceAllows(tokenResource, endpointResource string) bool {
	return resourceAllows([]byte(tokenResource), endpointResource)
}

func resourceAllows(tok []byte, endpoint string) bool {
	t := string(tok) // no allocation: only compared
	t = trimSlash(t)
	e := trimSlash(endpoint)
	if t == e {
		return true
	}
	if !isOrigin(t) || len(e) <= len(t) || e[:len(t)] != t || e[len(t)] != '/' {
		return false
	}
	return true
}

func trimSlash(s string) string {
	if len(s) > 1 && s[len(s)-1] == '/' {
		return s[:len(s)-1]
	}
	return s
}

// isOrigin reports whether s is scheme://authority with no path, query or fragment.
func isOrigin(s string) bool {
	i := 0
	for i < len(s) && s[i] != ':' {
		i++
	}
	if i == 0 || len(s) < i+3 || s[i:i+3] != "://" {
		return false
	}
	rest := s[i+3:]
	if rest == "" {
		return false
	}
	for j := 0; j < len(rest); j++ {
		switch rest[j] {
		case '/', '?', '#':
			return false
		}
	}
	return true
}

// Verify is the MCP proxy's token check: it opens the access token, finds its grant (from the
// per-replica cache when the revocation subscription is up and the entry is younger than
// CacheTTL, else from the store) and checks that the token's grant, data key, client and
// resource match, with resource the resource of the endpoint being served. It returns
// ErrInvalidToken for every token problem and ErrUnavailable when the store cannot be reached.
func (m *Manager) Verify(ctx context.Context, accessToken, resource string) (*Grant, error) {
	now := m.now()
	ring, err := m.ring()
	if err != nil {
		return nil, err
	}
	pt, err := ring.Open(session.PurposeAccess, accessToken, now)
	if err != nil {
		return nil, ErrInvalidToken
	}
	c, err := parseAccess(pt)
	if err != nil || !resourceAllows(c.resource, resource) {
		return nil, ErrInvalidToken
	}
	rec, kc, err := m.lookup(ctx, c.grantID)
	if err != nil {
		return nil, err
	}
	tkc := keyCheck(c.dataKey)
	if rec == nil || subtle.ConstantTimeCompare(tkc[:], kc[:]) != 1 ||
		rec.ClientID != string(c.clientID) || rec.Resource != string(c.resource) ||
		!now.Before(rec.ExpiresAt) {
		return nil, ErrInvalidToken
	}
	g := rec.Grant
	return &g, nil
}

// lookup returns the grant record (nil if it does not exist) through the cache.
func (m *Manager) lookup(ctx context.Context, id []byte) (*record, [16]byte, error) {
	var kc [16]byte
	m.mu.RLock()
	useCache := m.up && m.cacheTTL > 0
	epoch := m.epoch
	if useCache {
		if e, ok := m.cache[string(id)]; ok && time.Since(e.at) < m.cacheTTL {
			m.mu.RUnlock()
			return e.rec, e.kc, nil
		}
	}
	m.mu.RUnlock()
	ctx, cancel := context.WithTimeout(ctx, m.lookupT)
	defer cancel()
	// The flight key carries the cache epoch: a lookup that starts after an invalidation
	// never shares a read that started before it.
	ch := m.flight.DoChan(string(id)+"\x00"+strconv.FormatUint(epoch, 10), func() (any, error) {
		// The read is shared, so it is not cut short when the first caller leaves; it keeps
		// that caller's deadline, and every caller still waits no longer than its own.
		dl, _ := ctx.Deadline() // always set: the lookup timeout above
		fctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), dl)
		defer cancel()
		fetched := time.Now()
		rec, err := m.load(fctx, string(id))
		return fetchedRecord{rec: rec, at: fetched}, err
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		return nil, kc, unavailable("load grant", ctx.Err())
	}
	err := res.Err
	f, _ := res.Val.(fetchedRecord)
	rec, fetched := f.rec, f.at
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return nil, kc, err
		}
		m.log.Error("grant record unreadable", "err", err)
		return nil, kc, nil
	}
	if rec == nil {
		return nil, kc, nil
	}
	copy(kc[:], rec.KeyCheck)
	if useCache {
		m.mu.Lock()
		if m.up && m.epoch == epoch {
			if len(m.cache) >= maxCacheEntries {
				m.pruneLocked()
			}
			m.cache[rec.ID] = cacheEntry{rec: rec, kc: kc, at: fetched}
		}
		m.mu.Unlock()
	}
	return rec, kc, nil
}

// pruneLocked drops expired cache entries, or everything if none has expired.
func (m *Manager) pruneLocked() {
	for k, e := range m.cache {
		if time.Since(e.at) >= m.cacheTTL {
			delete(m.cache, k)
		}
	}
	if len(m.cache) >= maxCacheEntries {
		clear(m.cache)
	}
}

// UpstreamTokens decrypts the upstream tokens of g (as returned by Verify or Refresh) with the
// data key inside accessToken, which must belong to g.
func (m *Manager) UpstreamTokens(ctx context.Context, g *Grant, accessToken string) (identity.Tokens, error) {
	ring, err := m.ring()
	if err != nil {
		return identity.Tokens{}, err
	}
	pt, err := ring.Open(session.PurposeAccess, accessToken, m.now())
	if err != nil {
		return identity.Tokens{}, ErrInvalidToken
	}
	c, err := parseAccess(pt)
	if err != nil || string(c.grantID) != g.ID {
		return identity.Tokens{}, ErrInvalidToken
	}
	ct := g.upstream
	if ct == nil {
		rec, err := m.load(ctx, g.ID)
		if err != nil {
			return identity.Tokens{}, err
		}
		if rec == nil {
			return identity.Tokens{}, ErrInvalidToken
		}
		ct = rec.Upstream
	}
	upPT, err := session.Unwrap(c.dataKey, ct, upstreamAD(g.ID))
	if err != nil {
		return identity.Tokens{}, ErrInvalidToken
	}
	var up identity.Tokens
	if err := json.Unmarshal(upPT, &up); err != nil {
		return identity.Tokens{}, fmt.Errorf("grants: decode upstream tokens: %w", err)
	}
	return up, nil
}

// Revoke deletes a grant (its record holds the upstream tokens) and tells every replica to drop
// it from its cache. Revoking an unknown grant is not an error.
func (m *Manager) Revoke(ctx context.Context, grantID string) error {
	_, err := m.revoke(ctx, grantID)
	return err
}

// revoke reports whether the grant existed.
func (m *Manager) revoke(ctx context.Context, id string) (bool, error) {
	ctx = context.WithoutCancel(ctx) // a revocation, once started, is finished
	rec, err := m.load(ctx, id)
	if err != nil && errors.Is(err, ErrUnavailable) {
		return false, err
	}
	if err := m.st.Del(ctx, grantKey(id)); err != nil {
		return false, unavailable("delete grant", err)
	}
	m.invalidate(id)
	if _, err := m.st.Publish(ctx, RevokedChannel, []byte(id)); err != nil {
		// The record is gone; other replicas stop trusting their cached copy within CacheTTL.
		m.log.Warn("publish grant revocation failed", "grant", LogID(id), "err", err)
	}
	if rec != nil {
		if err := m.st.SRem(ctx, userIndex(rec.User.ID()), id); err != nil {
			m.log.Warn("unindex revoked grant", "grant", LogID(id), "err", err)
		}
		if err := m.st.SRem(ctx, clientIndex(rec.ClientID), id); err != nil {
			m.log.Warn("unindex revoked grant", "grant", LogID(id), "err", err)
		}
		if err := m.st.SRem(ctx, allIndex, id); err != nil {
			m.log.Warn("unindex revoked grant", "grant", LogID(id), "err", err)
		}
		m.log.Info("grant revoked", "grant", LogID(id), "client_id", rec.ClientID, "user_oid", rec.User.ID())
	}
	return rec != nil, nil
}

// RevokeToken revokes the grant behind an access or refresh token presented by clientID
// (RFC 7009): invalid, expired or unknown tokens are not an error; a token issued to another
// client gives ErrInvalidGrant and revokes nothing.
func (m *Manager) RevokeToken(ctx context.Context, token, clientID string) error {
	ring, err := m.ring()
	if err != nil {
		return err
	}
	now := m.now()
	var id, owner []byte
	if pt, err := ring.Open(session.PurposeAccess, token, now); err == nil {
		if c, err := parseAccess(pt); err == nil {
			id, owner = c.grantID, c.clientID
		}
	} else if pt, err := ring.Open(session.PurposeRefresh, token, now); err == nil {
		if c, err := parseRefresh(pt); err == nil {
			id, owner = c.grantID, c.clientID
		}
	}
	if id == nil {
		return nil
	}
	if subtle.ConstantTimeCompare(owner, []byte(clientID)) != 1 {
		return ErrInvalidGrant
	}
	return m.Revoke(ctx, string(id))
}

// RevokeUser revokes every grant of a user (identity.User.ID) and returns how many existed.
func (m *Manager) RevokeUser(ctx context.Context, userID string) (int, error) {
	return m.revokeIndex(ctx, userIndex(userID))
}

// RevokeClient revokes every grant of a client and returns how many existed.
func (m *Manager) RevokeClient(ctx context.Context, clientID string) (int, error) {
	return m.revokeIndex(ctx, clientIndex(clientID))
}

func (m *Manager) revokeIndex(ctx context.Context, index string) (int, error) {
	ids, err := m.st.SMembers(ctx, index)
	if err != nil {
		return 0, unavailable("list grants", err)
	}
	n := 0
	for _, id := range ids {
		existed, err := m.revoke(ctx, id)
		if err != nil {
			return n, err
		}
		if existed {
			n++
		}
	}
	// Members are removed one by one by revoke (and stale ones here), never the whole set, so
	// a grant issued meanwhile stays indexed.
	for _, id := range ids {
		_ = m.st.SRem(ctx, index, id)
	}
	return n, nil
}

// List returns the grants matching f (both fields must match when both are set), oldest
// first, without secrets.
func (m *Manager) List(ctx context.Context, f Filter) ([]Grant, error) {
	var index string
	switch {
	case f.UserID != "":
		index = userIndex(f.UserID)
	case f.ClientID != "":
		index = clientIndex(f.ClientID)
	default:
		return nil, errors.New("grants: list needs a user or a client")
	}
	return m.list(ctx, index, f)
}

// ListAll returns every grant, oldest first, without secrets (for operators: `mcpgate
// sessions list`). Grants issued before the all-grants index existed are found only by List.
func (m *Manager) ListAll(ctx context.Context) ([]Grant, error) {
	return m.list(ctx, allIndex, Filter{})
}

func (m *Manager) list(ctx context.Context, index string, f Filter) ([]Grant, error) {
	ids, err := m.st.SMembers(ctx, index)
	if err != nil {
		return nil, unavailable("list grants", err)
	}
	out := []Grant{}
	for _, id := range ids {
		rec, err := m.load(ctx, id)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			_ = m.st.SRem(ctx, index, id) // expired: drop the stale member
			continue
		}
		if f.ClientID != "" && rec.ClientID != f.ClientID || f.UserID != "" && rec.User.ID() != f.UserID {
			continue
		}
		g := rec.Grant
		g.upstream = nil
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b Grant) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// invalidate drops one grant from the cache.
func (m *Manager) invalidate(id string) {
	m.mu.Lock()
	delete(m.cache, id)
	m.epoch++
	m.mu.Unlock()
}

// setUp records the subscription state; either way the cache is flushed (while it was down,
// revocations may have been missed).
func (m *Manager) setUp(up bool) {
	m.mu.Lock()
	changed := m.up != up
	m.up = up
	clear(m.cache)
	m.epoch++
	m.mu.Unlock()
	if changed {
		if up {
			m.log.Info("grant revocation subscription up: cache enabled")
		} else {
			m.log.Warn("grant revocation subscription down: cache flushed and bypassed")
		}
	}
}

// CacheActive reports whether the per-replica cache is in use (the revocation subscription is
// up). For readiness and metrics.
func (m *Manager) CacheActive() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.up && m.cacheTTL > 0
}

// Run follows the revocation channel and keeps the per-replica cache coherent until ctx ends.
// Call it once per process; the cache is used only while its subscription is up.
func (m *Manager) Run(ctx context.Context) {
	defer m.setUp(false)
	for ctx.Err() == nil {
		sub, err := m.st.Subscribe(ctx, RevokedChannel)
		if err != nil {
			m.log.Warn("subscribe to grant revocations", "err", err)
		} else {
			m.follow(ctx, sub)
			_ = sub.Close()
			m.setUp(false)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (m *Manager) follow(ctx context.Context, sub store.Subscription) {
	for {
		select {
		case <-ctx.Done():
			return
		case up, ok := <-sub.State():
			if !ok {
				return
			}
			m.setUp(up)
		case msg, ok := <-sub.Messages():
			if !ok {
				return
			}
			m.invalidate(string(msg))
		}
	}
}
