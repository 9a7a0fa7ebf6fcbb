package oauth

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// fakeGrants stands in for grants.Manager while it is being written.
type fakeGrants struct {
	mu      sync.Mutex
	grants  map[string]*grants.Grant
	up      map[string]identity.Tokens
	access  map[string]string
	refresh map[string]string
}

func newTestGrants(t testing.TB, st store.Store, keeper *session.Keeper, clock *testClock) GrantManager {
	return &fakeGrants{grants: map[string]*grants.Grant{}, up: map[string]identity.Tokens{}, access: map[string]string{}, refresh: map[string]string{}}
}

func (f *fakeGrants) Issue(_ context.Context, g grants.Grant, up identity.Tokens) (*grants.TokenSet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g.ID = randomToken(16)
	f.grants[g.ID] = &g
	f.up[g.ID] = up
	at, rt := "AT-"+randomToken(16), "RT-"+randomToken(16)
	f.access[at], f.refresh[rt] = g.ID, g.ID
	return &grants.TokenSet{AccessToken: at, RefreshToken: rt, ExpiresIn: 3600, Scope: g.Scope, GrantID: g.ID}, nil
}

func (f *fakeGrants) Refresh(ctx context.Context, rt, clientID string, fn grants.RefreshFunc) (*grants.TokenSet, *grants.Grant, error) {
	f.mu.Lock()
	gid, ok := f.refresh[rt]
	g := f.grants[gid]
	up := f.up[gid]
	f.mu.Unlock()
	if !ok || g == nil || g.ClientID != clientID {
		return nil, nil, grants.ErrInvalidGrant
	}
	u, nup, err := fn(ctx, g, up)
	if err != nil {
		return nil, nil, fmt.Errorf("refresh upstream: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.refresh, rt)
	g.User = u
	f.up[gid] = nup
	at, nrt := "AT-"+randomToken(16), "RT-"+randomToken(16)
	f.access[at], f.refresh[nrt] = gid, gid
	return &grants.TokenSet{AccessToken: at, RefreshToken: nrt, ExpiresIn: 3600, Scope: g.Scope, GrantID: gid}, g, nil
}

func (f *fakeGrants) Revoke(_ context.Context, gid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.grants, gid)
	return nil
}

func (f *fakeGrants) RevokeToken(_ context.Context, token, clientID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	gid, ok := f.access[token]
	if !ok {
		gid, ok = f.refresh[token]
	}
	if !ok || f.grants[gid] == nil || f.grants[gid].ClientID != clientID {
		return grants.ErrInvalidToken
	}
	delete(f.grants, gid)
	return nil
}

// tokenValid reports whether an access token still works for resource.
func (e *env) tokenValid(at, resource string) bool {
	f := e.grants.(*fakeGrants)
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.grants[f.access[at]]
	return g != nil && (g.Resource == resource || g.Resource == testPublic)
}
