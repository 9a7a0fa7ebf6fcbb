// Package grants manages OAuth grants (sessions): the OAuth server issues, refreshes and revokes
// them; the MCP proxy verifies them on every call. A grant record lives in the store with the
// upstream tokens encrypted under the grant's own data key, which travels only inside the
// sealed access and refresh tokens, so a dump of the store reveals no upstream token.
package grants

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// Errors returned by the Manager.
var (
	// ErrInvalidToken: the token does not open, has expired, its grant is gone, or it is not
	// good for the resource. Answer 401 invalid_token (always the same body).
	ErrInvalidToken = errors.New("grants: invalid token")
	// ErrInvalidGrant: a refresh token is invalid, expired, replayed or bound to another
	// client. Answer 400 invalid_grant.
	ErrInvalidGrant = errors.New("grants: invalid grant")
	// ErrUnavailable: the store cannot be reached, so nothing can be verified. Answer 503.
	ErrUnavailable = errors.New("grants: store unavailable")
)

// Grant is one session: who signed in, through which client, for which resource and scope.
type Grant struct {
	// ID is the grant id (random, 256 bits, base64url).
	ID string `json:"id"`
	// ClientID is the OAuth client the grant was issued to.
	ClientID string `json:"client_id"`
	// User is the upstream identity.
	User identity.User `json:"user"`
	// Resource is the RFC 8707 resource the tokens are bound to (the public origin when the
	// client asked for none).
	Resource string `json:"resource"`
	// Scope is the granted scope (space separated).
	Scope string `json:"scope,omitempty"`
	// CreatedAt is when the grant was issued; ExpiresAt when it ends (refresh lifetime).
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// RefreshGen counts refresh-token rotations; the current refresh token has this generation.
	RefreshGen int `json:"refresh_gen"`
	// RefreshedAt is when the grant was last refreshed.
	RefreshedAt time.Time `json:"refreshed_at,omitzero"`
}

// TokenSet is what the token endpoint returns.
type TokenSet struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	// ExpiresIn is the access token's lifetime in seconds.
	ExpiresIn int    `json:"expires_in"`
	Scope     string `json:"scope,omitempty"`
	// GrantID identifies the grant (for logs: hash it; for revocation of a replayed code).
	GrantID string `json:"-"`
}

// Options configures a Manager. Zero values take the defaults.
type Options struct {
	// AccessTTL is the access-token lifetime (default 1 h).
	AccessTTL time.Duration
	// RefreshTTL is the refresh-token and grant lifetime (default 30 days).
	RefreshTTL time.Duration
	// RefreshGrace is how long a rotated refresh token may be retried and get the same answer
	// (default 30 s).
	RefreshGrace time.Duration
	// CacheTTL bounds how long a replica trusts a cached grant (default and maximum 1 s).
	CacheTTL time.Duration
	// Logger receives operational logs (never secrets). Nil discards.
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Filter selects grants for List and bulk revocation.
type Filter struct {
	UserID   string
	ClientID string
}

// RefreshFunc refreshes the upstream tokens of a grant during a refresh-token exchange. It
// returns the (possibly updated) user and the new upstream tokens.
type RefreshFunc func(ctx context.Context, g *Grant, up identity.Tokens) (identity.User, identity.Tokens, error)

// Manager issues, verifies, refreshes and revokes grants.
type Manager struct {
	st     store.Store
	keeper *session.Keeper
	opts   Options
}

// New returns a Manager over st, sealing tokens with keeper's current ring.
func New(st store.Store, keeper *session.Keeper, opts Options) *Manager {
	return &Manager{st: st, keeper: keeper, opts: opts}
}

var errTODO = errors.New("grants: not implemented yet")

// Issue creates a grant for g (ID, CreatedAt, ExpiresAt and RefreshGen are set here) with the
// upstream tokens up, stores it, and returns the client's tokens.
func (m *Manager) Issue(ctx context.Context, g Grant, up identity.Tokens) (*TokenSet, error) {
	return nil, errTODO
}

// Refresh exchanges a refresh token (bound to clientID) for a new token set.
func (m *Manager) Refresh(ctx context.Context, refreshToken, clientID string, refreshUpstream RefreshFunc) (*TokenSet, *Grant, error) {
	return nil, nil, errTODO
}

// Verify checks an access token for the endpoint whose resource is resource and returns its
// grant. It returns ErrInvalidToken or ErrUnavailable.
func (m *Manager) Verify(ctx context.Context, accessToken, resource string) (*Grant, error) {
	return nil, errTODO
}

// UpstreamTokens decrypts the grant's upstream tokens with the data key inside accessToken.
func (m *Manager) UpstreamTokens(ctx context.Context, g *Grant, accessToken string) (identity.Tokens, error) {
	return identity.Tokens{}, errTODO
}

// Revoke deletes a grant and its upstream tokens and tells every replica to drop it.
func (m *Manager) Revoke(ctx context.Context, grantID string) error { return errTODO }

// RevokeToken revokes the grant behind an access or refresh token issued to clientID (RFC 7009:
// unknown or invalid tokens are not an error).
func (m *Manager) RevokeToken(ctx context.Context, token, clientID string) error { return errTODO }

// RevokeUser revokes every grant of a user and returns how many.
func (m *Manager) RevokeUser(ctx context.Context, userID string) (int, error) { return 0, errTODO }

// RevokeClient revokes every grant of a client and returns how many.
func (m *Manager) RevokeClient(ctx context.Context, clientID string) (int, error) { return 0, errTODO }

// List returns the grants matching f, without secrets.
func (m *Manager) List(ctx context.Context, f Filter) ([]Grant, error) { return nil, errTODO }

// Run follows the revocation channel and keeps the per-replica cache coherent until ctx ends.
// Call it once per process; until it is subscribed the cache is bypassed.
func (m *Manager) Run(ctx context.Context) {}
