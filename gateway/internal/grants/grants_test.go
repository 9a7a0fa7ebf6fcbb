package grants_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/mcpgate/mcpgate/gateway/internal/store/redistest"
)

const (
	origin  = "http://127.0.0.1:8000"
	mcpRes  = origin + "/mcp"
	sseRes  = origin + "/mcp/sse"
	client  = "client-1"
	upAT    = "UPSTREAM-ACCESS-TOKEN-eyJhbGciOi"
	upRT    = "UPSTREAM-REFRESH-TOKEN-0.AXEA"
	upIDT   = "UPSTREAM-ID-TOKEN-eyJ0eXAi"
	userOID = "00000000-0000-0000-0000-0000000000aa"
)

var user = identity.User{Subject: "sub-1", ObjectID: userOID, Name: "Ada", Email: "ada@example.com"}

func upTokens() identity.Tokens {
	return identity.Tokens{AccessToken: upAT, RefreshToken: upRT, IDToken: upIDT, Expiry: time.Now().Add(time.Hour).UTC().Truncate(time.Second)}
}

// clock is a settable clock for expiry and grace tests.
type clock struct{ ns atomic.Int64 }

func newClock() *clock          { c := &clock{}; c.ns.Store(time.Now().UnixNano()); return c }
func (c *clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }
func (c *clock) Add(d time.Duration) {
	c.ns.Add(int64(d))
}

func newKeeper(t testing.TB) *session.Keeper {
	t.Helper()
	k, err := session.NewKey(session.StateActive, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := session.NewRing(k)
	if err != nil {
		t.Fatal(err)
	}
	return session.NewStaticKeeper(r)
}

// start returns a Manager whose Run loop is going and whose subscription is up.
func start(t testing.TB, st store.Store, keeper *session.Keeper, opts grants.Options) *grants.Manager {
	t.Helper()
	m := grants.New(st, keeper, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	poll(t, 10*time.Second, "subscription up", m.CacheActive)
	return m
}

func poll(t testing.TB, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v", what, bound)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startRedis(t testing.TB) (*redistest.Server, *store.Redis) {
	t.Helper()
	srv := redistest.Start(t)
	st, err := store.NewRedis(context.Background(), store.RedisOptions{URL: srv.URL(), Configure: func(o *redis.Options) {
		o.MaxRetries = -1 // fail fast in fault tests
		o.DialTimeout = 200 * time.Millisecond
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return srv, st
}

// backends runs fn against the in-memory store and a real redis-server.
func backends(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Run("memory", func(t *testing.T) { fn(t, store.NewMemory()) })
	t.Run("redis", func(t *testing.T) { _, st := startRedis(t); fn(t, st) })
}

func issue(t testing.TB, m *grants.Manager, resource string) *grants.TokenSet {
	t.Helper()
	ts, err := m.Issue(context.Background(), grants.Grant{ClientID: client, User: user, Resource: resource, Scope: "mcp:tools"}, upTokens())
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestIssueVerify(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		m := start(t, st, newKeeper(t), grants.Options{})
		ts := issue(t, m, mcpRes)
		if ts.AccessToken == "" || ts.RefreshToken == "" || ts.ExpiresIn != 3600 || ts.Scope != "mcp:tools" || ts.GrantID == "" {
			t.Fatalf("token set: %+v", ts)
		}
		for range 2 { // second call is served from the cache
			g, err := m.Verify(ctx, ts.AccessToken, mcpRes)
			if err != nil {
				t.Fatal(err)
			}
			if g.ID != ts.GrantID || g.ClientID != client || g.User.ID() != userOID || g.Resource != mcpRes || g.Scope != "mcp:tools" {
				t.Fatalf("grant: %+v", g)
			}
		}
		up, err := m.UpstreamTokens(ctx, &grants.Grant{ID: ts.GrantID}, ts.AccessToken)
		if err != nil || up != upTokens() && (up.AccessToken != upAT || up.RefreshToken != upRT || up.IDToken != upIDT) {
			t.Fatalf("UpstreamTokens = %v, %v", up.AccessToken == upAT, err)
		}
		g, _ := m.Verify(ctx, ts.AccessToken, mcpRes)
		if up, err := m.UpstreamTokens(ctx, g, ts.AccessToken); err != nil || up.AccessToken != upAT {
			t.Fatalf("UpstreamTokens from a verified grant: %v", err)
		}

		other := issue(t, m, mcpRes)
		bad := map[string]struct{ token, resource string }{
			"token for /mcp at /mcp/sse":   {ts.AccessToken, sseRes},
			"token for /mcp at origin":     {ts.AccessToken, origin},
			"token for /mcp at other host": {ts.AccessToken, "http://127.0.0.1:8001/mcp"},
			"refresh token as access":      {ts.RefreshToken, mcpRes},
			"garbage":                      {"garbage", mcpRes},
			"empty":                        {"", mcpRes},
			"tampered":                     {flip(ts.AccessToken), mcpRes},
		}
		for name, c := range bad {
			if _, err := m.Verify(ctx, c.token, c.resource); err != grants.ErrInvalidToken {
				t.Errorf("%s: %v, want ErrInvalidToken", name, err)
			}
		}
		if _, err := m.UpstreamTokens(ctx, &grants.Grant{ID: ts.GrantID}, other.AccessToken); err == nil {
			t.Fatal("another grant's token decrypted this grant's upstream tokens")
		}
	})
}

func flip(tok string) string {
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	raw[len(raw)/2] ^= 1
	return base64.RawURLEncoding.EncodeToString(raw)
}

func TestOriginTokenGoodEverywhere(t *testing.T) {
	m := start(t, store.NewMemory(), newKeeper(t), grants.Options{})
	ts := issue(t, m, origin)
	for _, res := range []string{origin, mcpRes, sseRes} {
		if _, err := m.Verify(t.Context(), ts.AccessToken, res); err != nil {
			t.Errorf("origin token at %s: %v", res, err)
		}
	}
	if _, err := m.Verify(t.Context(), ts.AccessToken, "http://127.0.0.1:80001/mcp"); err != grants.ErrInvalidToken {
		t.Errorf("origin token at another origin: %v", err)
	}
	sse := issue(t, m, sseRes)
	if _, err := m.Verify(t.Context(), sse.AccessToken, mcpRes); err != grants.ErrInvalidToken {
		t.Errorf("/mcp/sse token at /mcp: %v", err)
	}
}

func TestResourceAllows(t *testing.T) {
	cases := []struct {
		tok, ep string
		want    bool
	}{
		{origin, origin, true},
		{origin, mcpRes, true},
		{origin + "/", mcpRes, true},
		{origin, sseRes, true},
		{mcpRes, mcpRes, true},
		{mcpRes + "/", mcpRes, true},
		{mcpRes, sseRes, false},
		{sseRes, mcpRes, false},
		{origin, origin + "0/mcp", false},
		{"http://127.0.0.1:800", mcpRes, false},
		{"", mcpRes, false},
		{"/", "/mcp", false},
		{"https://a.example", "http://a.example/mcp", false},
		{"https://a.example?x", "https://a.example?x/mcp", false},
	}
	for _, c := range cases {
		if got := grants.ResourceAllows(c.tok, c.ep); got != c.want {
			t.Errorf("ResourceAllows(%q, %q) = %v", c.tok, c.ep, got)
		}
	}
}

func TestExpiry(t *testing.T) {
	clk := newClock()
	m := start(t, store.NewMemory(), newKeeper(t), grants.Options{AccessTTL: time.Minute, RefreshTTL: time.Hour, Now: clk.Now})
	ts := issue(t, m, mcpRes)
	clk.Add(time.Minute)
	if _, err := m.Verify(t.Context(), ts.AccessToken, mcpRes); err != grants.ErrInvalidToken {
		t.Fatalf("expired access token: %v", err)
	}
	// The refresh token still works and extends the grant.
	ts2, _, err := m.Refresh(t.Context(), ts.RefreshToken, client, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(t.Context(), ts2.AccessToken, mcpRes); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Hour)
	if _, _, err := m.Refresh(t.Context(), ts2.RefreshToken, client, nil); !errors.Is(err, grants.ErrInvalidGrant) {
		t.Fatalf("expired refresh token: %v", err)
	}
}

func TestRefreshRotation(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		clk := newClock()
		m := start(t, st, newKeeper(t), grants.Options{RefreshGrace: 30 * time.Second, Now: clk.Now})
		ts0 := issue(t, m, mcpRes)

		calls := 0
		refresh := func(_ context.Context, g *grants.Grant, up identity.Tokens) (identity.User, identity.Tokens, error) {
			calls++
			if up.RefreshToken != upRT && up.RefreshToken != "rotated-upstream" {
				return identity.User{}, identity.Tokens{}, fmt.Errorf("callback got wrong upstream tokens")
			}
			u := g.User
			u.Roles = []string{"reader"}
			return u, identity.Tokens{AccessToken: "new-upstream-at", RefreshToken: "rotated-upstream"}, nil
		}
		ts1, g1, err := m.Refresh(ctx, ts0.RefreshToken, client, refresh)
		if err != nil {
			t.Fatal(err)
		}
		if calls != 1 || g1.RefreshGen != 1 || len(g1.User.Roles) != 1 || ts1.RefreshToken == ts0.RefreshToken || ts1.AccessToken == ts0.AccessToken {
			t.Fatalf("after refresh: calls %d, gen %d, %+v", calls, g1.RefreshGen, g1.User.Roles)
		}
		if up, err := m.UpstreamTokens(ctx, g1, ts1.AccessToken); err != nil || up.AccessToken != "new-upstream-at" {
			t.Fatalf("upstream tokens not updated: %v", err)
		}
		// Both access tokens are good until they expire.
		for _, at := range []string{ts0.AccessToken, ts1.AccessToken} {
			if _, err := m.Verify(ctx, at, mcpRes); err != nil {
				t.Fatal(err)
			}
		}

		// Retry of generation 0 within the grace window: the same token set, no upstream call.
		clk.Add(10 * time.Second)
		again, _, err := m.Refresh(ctx, ts0.RefreshToken, client, refresh)
		if err != nil {
			t.Fatal(err)
		}
		if *again != *ts1 || calls != 1 {
			t.Fatalf("grace retry returned a different set (calls %d)", calls)
		}

		// Generation 1 rotates normally.
		ts2, _, err := m.Refresh(ctx, ts1.RefreshToken, client, refresh)
		if err != nil {
			t.Fatal(err)
		}
		// Generation 0 again: two rotations behind, a replay. The whole grant goes.
		if _, _, err := m.Refresh(ctx, ts0.RefreshToken, client, refresh); !errors.Is(err, grants.ErrInvalidGrant) {
			t.Fatalf("replay: %v", err)
		}
		poll(t, 2*time.Second, "replay revoked the grant", func() bool {
			_, err := m.Verify(ctx, ts2.AccessToken, mcpRes)
			return err == grants.ErrInvalidToken
		})
		if _, _, err := m.Refresh(ctx, ts2.RefreshToken, client, refresh); !errors.Is(err, grants.ErrInvalidGrant) {
			t.Fatalf("refresh after replay: %v", err)
		}
	})
}

// TestRefreshFinishesWhenTheClientLeaves: the client gives up while the upstream refresh runs
// (the IdP has already rotated its refresh token): the rotation is still saved, so the new
// upstream tokens are not lost and a retry within the grace window gets the same token set.
func TestRefreshFinishesWhenTheClientLeaves(t *testing.T) {
	_, st := startRedis(t)
	m := start(t, st, newKeeper(t), grants.Options{RefreshGrace: 30 * time.Second})
	ts0 := issue(t, m, mcpRes)
	ctx, cancel := context.WithCancel(t.Context())
	leave := func(_ context.Context, g *grants.Grant, _ identity.Tokens) (identity.User, identity.Tokens, error) {
		cancel() // the MCP client disconnects; the IdP has answered
		return g.User, identity.Tokens{AccessToken: "at-after-leave", RefreshToken: "rt-after-leave"}, nil
	}
	ts1, g1, err := m.Refresh(ctx, ts0.RefreshToken, client, leave)
	if err != nil {
		t.Fatalf("refresh whose client left: %v", err)
	}
	if up, err := m.UpstreamTokens(t.Context(), g1, ts1.AccessToken); err != nil || up.RefreshToken != "rt-after-leave" {
		t.Fatalf("the IdP's rotated refresh token was not saved: %+v, %v", up, err)
	}
	again, _, err := m.Refresh(t.Context(), ts0.RefreshToken, client, nil)
	if err != nil || *again != *ts1 {
		t.Fatalf("retry within grace: %v", err)
	}
}

func TestRefreshReuseAfterGraceRevokes(t *testing.T) {
	clk := newClock()
	m := start(t, store.NewMemory(), newKeeper(t), grants.Options{RefreshGrace: 30 * time.Second, Now: clk.Now})
	ts0 := issue(t, m, mcpRes)
	ts1, _, err := m.Refresh(t.Context(), ts0.RefreshToken, client, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(31 * time.Second)
	if _, _, err := m.Refresh(t.Context(), ts0.RefreshToken, client, nil); !errors.Is(err, grants.ErrInvalidGrant) {
		t.Fatalf("reuse after grace: %v", err)
	}
	if _, err := m.Verify(t.Context(), ts1.AccessToken, mcpRes); err != grants.ErrInvalidToken {
		t.Fatalf("grant survived a replay: %v", err)
	}
}

func TestRefreshClientBindingAndErrors(t *testing.T) {
	ctx := t.Context()
	m := start(t, store.NewMemory(), newKeeper(t), grants.Options{})
	ts := issue(t, m, mcpRes)
	if _, _, err := m.Refresh(ctx, ts.RefreshToken, "client-2", nil); !errors.Is(err, grants.ErrInvalidGrant) {
		t.Fatalf("other client: %v", err)
	}
	for _, tok := range []string{ts.AccessToken, "junk", "", flip(ts.RefreshToken)} {
		if _, _, err := m.Refresh(ctx, tok, client, nil); !errors.Is(err, grants.ErrInvalidGrant) {
			t.Fatalf("bad refresh token: %v", err)
		}
	}
	// An upstream failure leaves the grant as it was: the same refresh token works afterwards.
	upErr := errors.New("AADSTS50057: user disabled")
	_, _, err := m.Refresh(ctx, ts.RefreshToken, client, func(context.Context, *grants.Grant, identity.Tokens) (identity.User, identity.Tokens, error) {
		return identity.User{}, identity.Tokens{}, upErr
	})
	if !errors.Is(err, upErr) {
		t.Fatalf("upstream error not wrapped: %v", err)
	}
	if _, _, err := m.Refresh(ctx, ts.RefreshToken, client, nil); err != nil {
		t.Fatalf("refresh after an upstream failure: %v", err)
	}
	// An upstream refresh that returns another user revokes the grant.
	ts2 := issue(t, m, mcpRes)
	_, _, err = m.Refresh(ctx, ts2.RefreshToken, client, func(_ context.Context, _ *grants.Grant, up identity.Tokens) (identity.User, identity.Tokens, error) {
		return identity.User{ObjectID: "someone-else"}, up, nil
	})
	if !errors.Is(err, grants.ErrInvalidGrant) {
		t.Fatalf("user switch: %v", err)
	}
	if _, err := m.Verify(ctx, ts2.AccessToken, mcpRes); err != grants.ErrInvalidToken {
		t.Fatalf("grant survived a user switch: %v", err)
	}
}

// TestConcurrentRefresh: a client that fires the same refresh several times at once gets one
// rotation, and every request the same token set.
func TestConcurrentRefresh(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		m := start(t, st, newKeeper(t), grants.Options{})
		ts := issue(t, m, mcpRes)
		var calls atomic.Int32
		refresh := func(_ context.Context, g *grants.Grant, up identity.Tokens) (identity.User, identity.Tokens, error) {
			calls.Add(1)
			time.Sleep(20 * time.Millisecond)
			return g.User, up, nil
		}
		var wg sync.WaitGroup
		results := make([]*grants.TokenSet, 8)
		errs := make([]error, 8)
		for i := range results {
			wg.Go(func() { results[i], _, errs[i] = m.Refresh(context.Background(), ts.RefreshToken, client, refresh) })
		}
		wg.Wait()
		for i := range results {
			if errs[i] != nil {
				t.Fatalf("request %d: %v", i, errs[i])
			}
			if *results[i] != *results[0] {
				t.Fatalf("request %d got a different token set", i)
			}
		}
		if calls.Load() != 1 {
			t.Fatalf("%d upstream refreshes, want 1", calls.Load())
		}
	})
}

func TestRevoke(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		m := start(t, st, newKeeper(t), grants.Options{})
		a := issue(t, m, mcpRes)
		b := issue(t, m, mcpRes)
		c := issue(t, m, mcpRes)
		if _, err := m.Verify(ctx, a.AccessToken, mcpRes); err != nil {
			t.Fatal(err)
		}
		// RFC 7009: unknown tokens are fine, another client's token is refused.
		if err := m.RevokeToken(ctx, "nonsense", client); err != nil {
			t.Fatal(err)
		}
		if err := m.RevokeToken(ctx, a.AccessToken, "client-2"); !errors.Is(err, grants.ErrInvalidGrant) {
			t.Fatalf("revoke by another client: %v", err)
		}
		if _, err := m.Verify(ctx, a.AccessToken, mcpRes); err != nil {
			t.Fatal("another client revoked the grant")
		}
		if err := m.RevokeToken(ctx, a.AccessToken, client); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Verify(ctx, a.AccessToken, mcpRes); err != grants.ErrInvalidToken {
			t.Fatalf("after revoking by access token: %v", err)
		}
		if _, _, err := m.Refresh(ctx, a.RefreshToken, client, nil); !errors.Is(err, grants.ErrInvalidGrant) {
			t.Fatalf("refresh after revoke: %v", err)
		}
		if err := m.RevokeToken(ctx, b.RefreshToken, client); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Verify(ctx, b.AccessToken, mcpRes); err != grants.ErrInvalidToken {
			t.Fatalf("after revoking by refresh token: %v", err)
		}
		if err := m.Revoke(ctx, "no-such-grant"); err != nil {
			t.Fatal(err)
		}

		list, err := m.List(ctx, grants.Filter{UserID: userOID})
		if err != nil || len(list) != 1 || list[0].ID != c.GrantID {
			t.Fatalf("List = %d grants, %v", len(list), err)
		}
		if list, _ := m.List(ctx, grants.Filter{UserID: userOID, ClientID: "client-2"}); len(list) != 0 {
			t.Fatal("List ignored the client filter")
		}
		if _, err := m.List(ctx, grants.Filter{}); err == nil {
			t.Fatal("List without a filter")
		}
		other, _ := m.Issue(ctx, grants.Grant{ClientID: "client-2", User: identity.User{Subject: "bob"}, Resource: mcpRes}, identity.Tokens{})
		n, err := m.RevokeUser(ctx, userOID)
		if err != nil || n != 1 {
			t.Fatalf("RevokeUser = %d, %v", n, err)
		}
		if _, err := m.Verify(ctx, c.AccessToken, mcpRes); err != grants.ErrInvalidToken {
			t.Fatal("RevokeUser left a grant")
		}
		if _, err := m.Verify(ctx, other.AccessToken, mcpRes); err != nil {
			t.Fatal("RevokeUser revoked another user's grant")
		}
		n, err = m.RevokeClient(ctx, "client-2")
		if err != nil || n != 1 {
			t.Fatalf("RevokeClient = %d, %v", n, err)
		}
		if _, err := m.Verify(ctx, other.AccessToken, mcpRes); err != grants.ErrInvalidToken {
			t.Fatal("RevokeClient left a grant")
		}
	})
}

// TestRevokePropagates: two Managers (two replicas) share one Redis; a grant revoked on one
// stops verifying on the other within one second, although the other had it cached.
func TestRevokePropagates(t *testing.T) {
	_, st1 := startRedis(t)
	st2, err := store.NewRedis(t.Context(), store.RedisOptions{URL: "redis://" + st1.Client().Options().Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	keeper := newKeeper(t)
	m1 := start(t, st1, keeper, grants.Options{})
	m2 := start(t, st2, keeper, grants.Options{})
	ts := issue(t, m1, mcpRes)
	if _, err := m2.Verify(t.Context(), ts.AccessToken, mcpRes); err != nil {
		t.Fatal(err)
	}
	if err := m1.Revoke(t.Context(), ts.GrantID); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Second, "revocation seen by the other replica", func() bool {
		_, err := m2.Verify(t.Context(), ts.AccessToken, mcpRes)
		return err == grants.ErrInvalidToken
	})

	// With a cache lifetime far beyond the test, only the pub/sub message can drop the entry.
	m2.SetCacheTTL(time.Hour)
	ts2 := issue(t, m1, mcpRes)
	if _, err := m2.Verify(t.Context(), ts2.AccessToken, mcpRes); err != nil {
		t.Fatal(err)
	}
	// Prove the entry is cached: deleting the record behind m2's back changes nothing.
	raw, _ := st1.Get(t.Context(), store.Key("grant", ts2.GrantID))
	_ = st1.Del(t.Context(), store.Key("grant", ts2.GrantID))
	if _, err := m2.Verify(t.Context(), ts2.AccessToken, mcpRes); err != nil {
		t.Fatalf("not served from the cache: %v", err)
	}
	_ = st1.Set(t.Context(), store.Key("grant", ts2.GrantID), raw, time.Hour)
	if err := m1.Revoke(t.Context(), ts2.GrantID); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "pub/sub invalidation", func() bool {
		_, err := m2.Verify(t.Context(), ts2.AccessToken, mcpRes)
		return err == grants.ErrInvalidToken
	})
}

// TestNoUpstreamSecretsInRedis dumps every key of Redis after issuing and refreshing grants
// and looks for the upstream tokens, the data keys and the client's tokens.
func TestNoUpstreamSecretsInRedis(t *testing.T) {
	_, st := startRedis(t)
	ctx := t.Context()
	m := start(t, st, newKeeper(t), grants.Options{})
	ts := issue(t, m, mcpRes)
	ts1, _, err := m.Refresh(ctx, ts.RefreshToken, client, func(_ context.Context, g *grants.Grant, up identity.Tokens) (identity.User, identity.Tokens, error) {
		up.AccessToken = upAT + "-2"
		return g.User, up, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, ts1.AccessToken, mcpRes); err != nil {
		t.Fatal(err)
	}
	rdb := st.Client()
	var dump strings.Builder
	iter := rdb.Scan(ctx, 0, "*", 100).Iterator()
	keys := 0
	for iter.Next(ctx) {
		keys++
		k := iter.Val()
		dump.WriteString(k + "\n")
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			dump.WriteString(rdb.Get(ctx, k).Val() + "\n")
		case "set":
			dump.WriteString(strings.Join(rdb.SMembers(ctx, k).Val(), "\n") + "\n")
		default:
			t.Fatalf("unexpected key type %s", typ)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if keys < 3 {
		t.Fatalf("only %d keys in Redis: the test would prove nothing", keys)
	}
	secrets := []string{upAT, upRT, upIDT, "UPSTREAM", ts.AccessToken, ts.RefreshToken, ts1.AccessToken, ts1.RefreshToken}
	for _, s := range secrets {
		if strings.Contains(dump.String(), s) {
			t.Errorf("Redis holds a secret (%.12s…)", s)
		}
	}
	// The data key travels only inside the tokens: no encoding of it may be in Redis.
	dk := m.DataKeyOf(ts.AccessToken)
	if len(dk) != 32 {
		t.Fatal("no data key in the access token")
	}
	for _, enc := range []string{string(dk), base64.StdEncoding.EncodeToString(dk), base64.RawURLEncoding.EncodeToString(dk), fmt.Sprintf("%x", dk)} {
		if strings.Contains(dump.String(), enc) {
			t.Error("Redis holds the grant's data key")
		}
	}
}

// TestStoreDown: with Redis gone, Verify answers ErrUnavailable (fail closed) even for a grant
// it had cached, and it recovers by itself when Redis is back.
func TestStoreDown(t *testing.T) {
	srv, st := startRedis(t)
	ctx := t.Context()
	m := start(t, st, newKeeper(t), grants.Options{})
	m.SetCacheTTL(time.Hour) // only the subscription drop may end the cached entry
	ts := issue(t, m, mcpRes)
	if _, err := m.Verify(ctx, ts.AccessToken, mcpRes); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	poll(t, 5*time.Second, "ErrUnavailable with Redis down", func() bool {
		_, err := m.Verify(ctx, ts.AccessToken, mcpRes)
		return errors.Is(err, grants.ErrUnavailable)
	})
	if _, err := m.Issue(ctx, grants.Grant{ClientID: client, User: user, Resource: mcpRes}, upTokens()); !errors.Is(err, grants.ErrUnavailable) {
		t.Fatalf("Issue with Redis down: %v", err)
	}
	if _, _, err := m.Refresh(ctx, ts.RefreshToken, client, nil); !errors.Is(err, grants.ErrUnavailable) {
		t.Fatalf("Refresh with Redis down: %v", err)
	}
	if _, err := m.Verify(ctx, "garbage", mcpRes); err != grants.ErrInvalidToken {
		t.Fatalf("bad token with Redis down: %v", err)
	}
	srv.Restart(t) // an empty Redis: the grant is gone
	poll(t, 10*time.Second, "recovery", func() bool {
		_, err := m.Verify(ctx, ts.AccessToken, mcpRes)
		return err == grants.ErrInvalidToken
	})
	poll(t, 10*time.Second, "cache back on", m.CacheActive)
	ts2 := issue(t, m, mcpRes)
	if _, err := m.Verify(ctx, ts2.AccessToken, mcpRes); err != nil {
		t.Fatal(err)
	}
}

// TestKeyRotation: tokens sealed before a rotation keep working after it.
func TestKeyRotation(t *testing.T) {
	ctx := t.Context()
	k1, _ := session.NewKey(session.StateActive, time.Now())
	r1, _ := session.NewRing(k1)
	k2, _ := session.NewKey(session.StateNext, time.Now())
	r2, _ := r1.WithKey(k2)
	r3, _ := r2.Promote(k2.ID, time.Now())
	var cur atomic.Pointer[session.Ring]
	cur.Store(r1)
	keeper, err := session.NewKeeper(ctx, func(context.Context) ([]byte, error) { return cur.Load().Marshal() }, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := start(t, store.NewMemory(), keeper, grants.Options{})
	ts := issue(t, m, mcpRes)
	cur.Store(r3)
	if err := keeper.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, ts.AccessToken, mcpRes); err != nil {
		t.Fatalf("old access token after rotation: %v", err)
	}
	ts2, _, err := m.Refresh(ctx, ts.RefreshToken, client, nil)
	if err != nil {
		t.Fatalf("old refresh token after rotation: %v", err)
	}
	if _, err := r1.Open(session.PurposeAccess, ts2.AccessToken, time.Now()); err == nil {
		t.Fatal("new token sealed with the retired key")
	}
}

func TestIssueValidation(t *testing.T) {
	m := grants.New(store.NewMemory(), newKeeper(t), grants.Options{})
	for _, g := range []grants.Grant{
		{User: user, Resource: mcpRes},
		{ClientID: client, User: user},
		{ClientID: client, Resource: mcpRes},
	} {
		if _, err := m.Issue(t.Context(), g, identity.Tokens{}); err == nil {
			t.Errorf("Issue accepted %+v", g)
		}
	}
}

// TestNoRingFailsClosed: before the session-key ring exists every operation is ErrUnavailable.
func TestNoRingFailsClosed(t *testing.T) {
	keeper, err := session.NewPendingKeeper(func(context.Context) ([]byte, error) { return nil, errors.New("not yet") }, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := grants.New(store.NewMemory(), keeper, grants.Options{})
	ctx := t.Context()
	if _, err := m.Issue(ctx, grants.Grant{ClientID: client, User: user, Resource: mcpRes}, identity.Tokens{}); !errors.Is(err, grants.ErrUnavailable) {
		t.Errorf("Issue: %v", err)
	}
	if _, err := m.Verify(ctx, "x", mcpRes); !errors.Is(err, grants.ErrUnavailable) {
		t.Errorf("Verify: %v", err)
	}
	if _, _, err := m.Refresh(ctx, "x", client, nil); !errors.Is(err, grants.ErrUnavailable) {
		t.Errorf("Refresh: %v", err)
	}
	if err := m.RevokeToken(ctx, "x", client); !errors.Is(err, grants.ErrUnavailable) {
		t.Errorf("RevokeToken: %v", err)
	}
}

// gatedStore, while gated, counts grant reads and holds each one until the gate opens.
type gatedStore struct {
	store.Store
	gate    atomic.Pointer[chan struct{}]
	reads   atomic.Int32
	entered chan struct{}
}

func newGatedStore() *gatedStore {
	return &gatedStore{Store: store.NewMemory(), entered: make(chan struct{}, 64)}
}

// close starts holding grant reads; the returned function lets them (and later ones) through.
func (g *gatedStore) close() (open func()) {
	ch := make(chan struct{})
	g.gate.Store(&ch)
	return func() { g.gate.Store(nil); close(ch) }
}

func (g *gatedStore) Get(ctx context.Context, key string) ([]byte, error) {
	if ch := g.gate.Load(); ch != nil && strings.Contains(key, "grant") {
		g.reads.Add(1)
		g.entered <- struct{}{}
		<-*ch
	}
	return g.Store.Get(ctx, key)
}

// TestConcurrentMissesShareOneRead: a burst of calls on one session whose cache entry has
// expired reads the grant from the store once, not once per call.
func TestConcurrentMissesShareOneRead(t *testing.T) {
	gs := newGatedStore()
	m := start(t, gs, newKeeper(t), grants.Options{})
	ts := issue(t, m, mcpRes)
	m.SetCacheTTL(time.Nanosecond) // every Verify misses the cache
	open := gs.close()
	const n = 32
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := m.Verify(t.Context(), ts.AccessToken, mcpRes)
			errs <- err
		})
	}
	<-gs.entered                       // the first read is in flight...
	time.Sleep(100 * time.Millisecond) // ...and the other callers have joined it
	open()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	if got := gs.reads.Load(); got != 1 {
		t.Fatalf("%d concurrent cache misses made %d store reads, want 1", n, got)
	}
}

// TestSharedReadNotReusedAfterRevoke: a lookup that starts after a revocation reached this
// replica does not join a read that started before it (that read may see the grant).
func TestSharedReadNotReusedAfterRevoke(t *testing.T) {
	gs := newGatedStore()
	m := start(t, gs, newKeeper(t), grants.Options{})
	ts := issue(t, m, mcpRes)
	g, err := m.Verify(t.Context(), ts.AccessToken, mcpRes)
	if err != nil {
		t.Fatal(err)
	}
	m.SetCacheTTL(time.Nanosecond)
	open := gs.close()
	defer func() {
		if gs.gate.Load() != nil {
			open()
		}
	}()
	before := make(chan error, 1)
	go func() { _, err := m.Verify(t.Context(), ts.AccessToken, mcpRes); before <- err }()
	<-gs.entered // a read of the (still existing) grant is in flight
	// Another replica (sharing the store, not the gate) revokes the grant; its message
	// reaches this replica's subscription.
	other := start(t, gs.Store, newKeeper(t), grants.Options{})
	if err := other.Revoke(t.Context(), g.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the revocation message's delivery
	after := make(chan error, 1)
	go func() { _, err := m.Verify(t.Context(), ts.AccessToken, mcpRes); after <- err }()
	select {
	case <-gs.entered: // the later lookup made its own read
	case err := <-after:
		t.Fatalf("a lookup after the revocation joined the read started before it: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the lookup after the revocation made no read")
	}
	open()
	if err := <-after; err != grants.ErrInvalidToken {
		t.Fatalf("Verify after revocation: %v, want ErrInvalidToken", err)
	}
	<-before
}

// TestHungReadKeepsCallerDeadlines: when the store hangs (a black-holed Redis), every caller
// of a shared read still gets ErrUnavailable by its own deadline.
func TestHungReadKeepsCallerDeadlines(t *testing.T) {
	gs := newGatedStore()
	m := start(t, gs, newKeeper(t), grants.Options{})
	ts := issue(t, m, mcpRes)
	m.SetCacheTTL(time.Nanosecond)
	open := gs.close() // reads hang, ignoring their context, until the end of the test
	defer open()
	first, cancelFirst := context.WithTimeout(t.Context(), time.Hour)
	defer cancelFirst()
	go func() { _, _ = m.Verify(first, ts.AccessToken, mcpRes) }() // starts the hung read
	<-gs.entered
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := m.Verify(ctx, ts.AccessToken, mcpRes) // joins it
	if !errors.Is(err, grants.ErrUnavailable) {
		t.Fatalf("Verify with the store hung: %v, want ErrUnavailable", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("Verify returned after %v, want about its 100 ms deadline", waited)
	}
}

// TestLookupTimeout: with the store hung and no deadline from the caller, Verify gives up
// after LookupTimeout with ErrUnavailable.
func TestLookupTimeout(t *testing.T) {
	gs := newGatedStore()
	m := start(t, gs, newKeeper(t), grants.Options{LookupTimeout: 50 * time.Millisecond})
	ts := issue(t, m, mcpRes)
	m.SetCacheTTL(time.Nanosecond)
	open := gs.close()
	defer open()
	start := time.Now()
	if _, err := m.Verify(context.Background(), ts.AccessToken, mcpRes); !errors.Is(err, grants.ErrUnavailable) {
		t.Fatalf("Verify with the store hung: %v, want ErrUnavailable", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("Verify returned after %v, want about the 50 ms lookup timeout", waited)
	}
}

// TestGrantLogID: a verified grant carries its log id (computed once when loaded).
func TestGrantLogID(t *testing.T) {
	m := start(t, store.NewMemory(), newKeeper(t), grants.Options{})
	ts := issue(t, m, mcpRes)
	g, err := m.Verify(t.Context(), ts.AccessToken, mcpRes)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := g.LogID(), grants.LogID(g.ID); got != want || len(want) != 12 {
		t.Fatalf("LogID() = %q, want %q", got, want)
	}
	if got := (&grants.Grant{ID: g.ID}).LogID(); got != grants.LogID(g.ID) {
		t.Fatalf("LogID() of a grant not loaded = %q", got)
	}
}
