package ssebridge_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/ssebridge"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// expectEnd waits for the clean end of a stream (the response's terminator, not a broken
// connection).
func expectEnd(t *testing.T, c *sseClient, what string) {
	t.Helper()
	if ev := c.next(); ev.name != "EOF" || c.endErr != io.EOF {
		t.Fatalf("%s: %+v (%v), want the clean end of the stream", what, ev, c.endErr)
	}
}

func streamKey(c *sseClient) string {
	return store.Key("sse", strings.TrimPrefix(c.endpoint, "/mcp/message?sessionId="))
}

// TestRevokeClosesStreams: revoking a grant ends its streams on every replica within about a
// second (a call in flight is cancelled), deletes their keys so that later POSTs find no
// session, and leaves the streams of other grants alone.
func TestRevokeClosesStreams(t *testing.T) {
	for _, noHijack := range []bool{false, true} {
		t.Run(fmt.Sprintf("noHijack=%v", noHijack), func(t *testing.T) { testRevokeClosesStreams(t, noHijack) })
	}
}

func testRevokeClosesStreams(t *testing.T, noHijack bool) {
	e := newEnv(t)
	e.noHijack = noHijack
	// No periodic check during the test: only the revocation message may close the streams.
	slow := func(c *ssebridge.Config) { c.GrantCheckInterval = time.Hour }
	a, b := e.replica(t, "a", slow), e.replica(t, "b", slow)
	g1, g2 := e.issue(t, "ada", public), e.issue(t, "ada", public)
	c1, c2, c3 := open(t, a, g1.AccessToken), open(t, b, g1.AccessToken), open(t, a, g2.AccessToken)
	mustPost(t, c1, a, g1.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"block"}`)
	waitFor(t, "call in flight", func() bool { return countMethod(e, "block") == 1 })

	start := time.Now()
	if err := e.grants.Revoke(t.Context(), g1.GrantID); err != nil {
		t.Fatal(err)
	}
	expectEnd(t, c1, "revoked grant's stream on a")
	expectEnd(t, c2, "revoked grant's stream on b")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("streams ended %v after the revocation, want about a second at most", d)
	}
	waitFor(t, "streams removed", func() bool { return a.bridge.OpenStreams() == 1 && b.bridge.OpenStreams() == 0 })
	for _, c := range []*sseClient{c1, c2} {
		waitFor(t, "key deleted", func() bool { _, err := e.st.Get(t.Context(), streamKey(c)); return err == store.ErrNotFound })
		// The revoked token is refused by the chain; any other token finds no session.
		if st, _ := c.post(a, g1.AccessToken, `{"jsonrpc":"2.0","id":2,"method":"ping"}`); st != http.StatusUnauthorized {
			t.Fatalf("POST with the revoked token: %d", st)
		}
		for _, r := range []*replica{a, b} {
			if st, _ := c.post(r, g2.AccessToken, `{"jsonrpc":"2.0","id":2,"method":"ping"}`); st != http.StatusNotFound {
				t.Fatalf("POST to a closed session: %d, want 404", st)
			}
		}
	}
	if n := countMethod(e, "block"); n != 1 {
		t.Fatalf("%d block calls", n)
	}
	// The other grant's stream is untouched.
	mustPost(t, c3, a, g2.AccessToken, `{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	if m := c3.nextJSON(); m["id"] != 3.0 || m["result"] == nil {
		t.Fatalf("other grant's stream: %v", m)
	}
	for _, r := range []*replica{a, b} {
		if got := counter(t, r, "mcpgate_sse_streams_closed_total", "grant_revoked"); got != 1 {
			t.Fatalf("grant_revoked closes on a replica: %v, want 1", got)
		}
	}
}

// staleVerifier trusts the first answer for a token forever, like a cache that has not yet
// seen a revocation: the chain lets a revoked token through.
type staleVerifier struct {
	m  *grants.Manager
	mu sync.Mutex
	ok map[string]*grants.Grant
}

func (v *staleVerifier) Verify(ctx context.Context, tok, resource string) (*grants.Grant, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if g, ok := v.ok[tok]; ok {
		return g, nil
	}
	g, err := v.m.Verify(ctx, tok, resource)
	if err == nil {
		v.ok[tok] = g
	}
	return g, err
}

// TestRevokeOvertakesOpen: a stream whose token was verified before a revocation that reached
// the replica first (the GET raced the revocation) is closed at once, not left open.
func TestRevokeOvertakesOpen(t *testing.T) {
	e := newEnv(t)
	e.verifier = &staleVerifier{m: e.grants, ok: map[string]*grants.Grant{}}
	a := e.replica(t, "a", func(c *ssebridge.Config) { c.GrantCheckInterval = time.Hour })
	g := e.issue(t, "ada", public)
	c := open(t, a, g.AccessToken)
	if err := e.grants.Revoke(t.Context(), g.GrantID); err != nil {
		t.Fatal(err)
	}
	expectEnd(t, c, "stream open at the revocation")
	waitFor(t, "stream removed", func() bool { return a.bridge.OpenStreams() == 0 })
	late, err := tryOpen(t, a, g.AccessToken)
	if err != nil {
		t.Fatalf("GET with the stale verifier: %v", err)
	}
	expectEnd(t, late, "stream opened after the revocation")
	waitFor(t, "late stream removed", func() bool { return a.bridge.OpenStreams() == 0 })
	waitFor(t, "late key deleted", func() bool { _, err := e.st.Get(t.Context(), streamKey(late)); return err == store.ErrNotFound })
	if got := counter(t, a, "mcpgate_sse_streams_closed_total", "grant_revoked"); got != 2 {
		t.Fatalf("grant_revoked closes: %v, want 2", got)
	}
}

// TestGrantCheckClosesGoneStreams: a stream whose grant expires (no revocation message) is
// closed by the periodic check; a live grant's stream stays.
func TestGrantCheckClosesGoneStreams(t *testing.T) {
	e := newEnv(t)
	a := e.replica(t, "a", func(c *ssebridge.Config) { c.GrantCheckInterval = 100 * time.Millisecond })
	short := grants.New(e.st, e.keeper, grants.Options{AccessTTL: time.Second, RefreshTTL: 2 * time.Second})
	issued := time.Now() // before the record's TTL starts
	expiring, err := short.Issue(t.Context(), grants.Grant{ClientID: "client-1", Resource: public, Scope: "mcp:tools",
		User: identity.User{Subject: "ada", ObjectID: "oid-ada", Name: "ada"}}, identity.Tokens{AccessToken: "upstream"})
	if err != nil {
		t.Fatal(err)
	}
	live := e.issue(t, "ada", public)
	c1, c2 := open(t, a, expiring.AccessToken), open(t, a, live.AccessToken)
	expectEnd(t, c1, "stream of the expired grant")
	if d := time.Since(issued); d < 1900*time.Millisecond || d > 5*time.Second {
		t.Fatalf("stream ended %v after the grant was issued; it expires after 2 s, checks every 0.1 s", d)
	}
	waitFor(t, "stream removed", func() bool { return a.bridge.OpenStreams() == 1 })
	mustPost(t, c2, a, live.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if m := c2.nextJSON(); m["id"] != 1.0 {
		t.Fatalf("live grant's stream: %v", m)
	}
	if got := counter(t, a, "mcpgate_sse_streams_closed_total", "grant_gone"); got != 1 {
		t.Fatalf("grant_gone closes: %v, want 1", got)
	}
}
