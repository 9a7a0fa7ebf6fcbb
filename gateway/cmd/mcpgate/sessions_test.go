package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/mcpgate/mcpgate/gateway/internal/store/redistest"
)

const sessRes = "http://127.0.0.1:8000/mcp"

// replica is a gateway's grants manager with its revocation subscription running (its
// per-replica cache is in use).
func replica(t *testing.T, url string, keeper *session.Keeper) *grants.Manager {
	t.Helper()
	st, err := store.NewRedis(context.Background(), store.RedisOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	m := grants.New(st, keeper, grants.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); !m.CacheActive(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("revocation subscription not up")
		}
	}
	return m
}

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestSessionsListAndRevoke(t *testing.T) {
	srv := redistest.Start(t)
	t.Setenv("MCPGATE_REDIS_URL", "")
	t.Setenv("MCPGATE_REDIS_ENTRA", "")
	key, err := session.NewKey(session.StateActive, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ring, err := session.NewRing(key)
	if err != nil {
		t.Fatal(err)
	}
	keeper := session.NewStaticKeeper(ring)
	m := replica(t, srv.URL(), keeper)
	ctx := t.Context()
	ann := identity.User{Subject: "s-ann", ObjectID: "oid-ann", TenantID: "t1", Username: "ann@contoso.com", Name: "Ann"}
	bob := identity.User{Subject: "s-bob", ObjectID: "oid-bob", Username: "bob\x1b[31m@contoso.com"}
	issue := func(u identity.User, client string) *grants.TokenSet {
		ts, err := m.Issue(ctx, grants.Grant{ClientID: client, User: u, Resource: sessRes, Scope: "mcp:tools"},
			identity.Tokens{AccessToken: "upstream-at", RefreshToken: "upstream-rt"})
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	a1 := issue(ann, "client-1")
	a2 := issue(ann, "client-2")
	b1 := issue(bob, "client-1")
	for _, ts := range []*grants.TokenSet{a1, a2, b1} { // warm the replica's cache
		if _, err := m.Verify(ctx, ts.AccessToken, sessRes); err != nil {
			t.Fatal(err)
		}
	}

	// List: every session, JSON, no secrets.
	out, errs, code := runCLI(t, "sessions", "list", "--redis-url", srv.URL(), "--json")
	if code != 0 {
		t.Fatalf("list: %d %s", code, errs)
	}
	var views []sessionView
	if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 3 {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	for _, secret := range []string{a1.AccessToken, a1.RefreshToken, a1.GrantID, a2.GrantID, b1.GrantID, "upstream-at", "upstream-rt"} {
		if strings.Contains(out, secret) {
			t.Fatalf("list prints a secret:\n%s", out)
		}
	}
	if views[0].Session != grants.LogID(a1.GrantID) || views[0].UserOID != "oid-ann" || views[0].ClientID != "client-1" ||
		views[0].TenantID != "t1" || views[0].CreatedAt.IsZero() || views[0].ExpiresAt.Before(views[0].CreatedAt) {
		t.Errorf("first session %+v", views[0])
	}
	// Filters and the table.
	out, _, code = runCLI(t, "sessions", "list", "--redis-url", srv.URL(), "--user", "oid-ann")
	if code != 0 || strings.Count(out, "oid-ann") != 2 || strings.Contains(out, "oid-bob") || !strings.HasPrefix(out, "SESSION") {
		t.Fatalf("list --user:\n%s", out)
	}
	t.Setenv("MCPGATE_REDIS_URL", srv.URL()) // the environment works as for serve
	out, _, code = runCLI(t, "sessions", "list", "--client", "client-1")
	if code != 0 || !strings.Contains(out, "oid-bob") || strings.Contains(out, "\x1b") || strings.Contains(out, grants.LogID(a2.GrantID)) {
		t.Fatalf("list --client:\n%q", out)
	}

	// Revoke one session by the id list shows.
	out, errs, code = runCLI(t, "sessions", "revoke", "--session", grants.LogID(a2.GrantID))
	if code != 0 || !strings.Contains(out, "revoked session") {
		t.Fatalf("revoke --session: %d %s %s", code, out, errs)
	}
	waitRevoked(t, m, a2.AccessToken)
	if _, err := m.Verify(ctx, a1.AccessToken, sessRes); err != nil {
		t.Fatal("revoking one session ended another")
	}
	// Revoke by user: the other replica's cache drops it (pub/sub), and the refresh token dies.
	out, _, code = runCLI(t, "sessions", "revoke", "--user", "oid-ann")
	if code != 0 || !strings.Contains(out, "revoked 1 session(s) of user oid-ann") {
		t.Fatalf("revoke --user: %d %s", code, out)
	}
	waitRevoked(t, m, a1.AccessToken)
	if _, _, err := m.Refresh(ctx, a1.RefreshToken, "client-1", nil); err == nil {
		t.Fatal("refresh after revoke")
	}
	// Revoke by client.
	out, _, code = runCLI(t, "sessions", "revoke", "--client", "client-1")
	if code != 0 || !strings.Contains(out, "revoked 1 session(s) of client client-1") {
		t.Fatalf("revoke --client: %d %s", code, out)
	}
	waitRevoked(t, m, b1.AccessToken)
	if out, _, _ := runCLI(t, "sessions", "list"); strings.TrimSpace(out) != "no sessions" {
		t.Fatalf("after revoking everything:\n%s", out)
	}
	if _, errs, code := runCLI(t, "sessions", "revoke", "--session", "000000000000"); code != 1 || !strings.Contains(errs, "no session") {
		t.Fatalf("unknown session: %d %s", code, errs)
	}
}

// waitRevoked waits until the replica refuses the token; the design bound is one second.
func waitRevoked(t *testing.T, m *grants.Manager, accessToken string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := m.Verify(t.Context(), accessToken, sessRes); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("revoked session still verifies on the other replica")
		}
	}
}

func TestSessionsRefusals(t *testing.T) {
	t.Setenv("MCPGATE_REDIS_URL", "")
	t.Setenv("MCPGATE_REDIS_ENTRA", "")
	if _, errs, code := runCLI(t, "sessions", "list"); code != 1 || !strings.Contains(errs, "no Redis configured") || !strings.Contains(errs, "memory") {
		t.Fatalf("no Redis: %d %s", code, errs)
	}
	if _, errs, code := runCLI(t, "sessions", "revoke", "--redis-url", "redis://127.0.0.1:1/0"); code != 2 || !strings.Contains(errs, "exactly one") {
		t.Fatalf("no target: %d %s", code, errs)
	}
	if _, errs, code := runCLI(t, "sessions", "revoke", "--user", "u", "--client", "c"); code != 2 || !strings.Contains(errs, "exactly one") {
		t.Fatalf("two targets: %d %s", code, errs)
	}
	if _, errs, code := runCLI(t, "sessions", "frob"); code != 2 || !strings.Contains(errs, "unknown subcommand") {
		t.Fatalf("unknown: %d %s", code, errs)
	}
	if out, _, code := runCLI(t, "sessions", "--help"); code != 0 || !strings.Contains(out, "--session") {
		t.Fatalf("help: %d %s", code, out)
	}
	t.Setenv("MCPGATE_REDIS_ENTRA", "maybe")
	if _, errs, code := runCLI(t, "sessions", "list", "--redis-url", "redis://127.0.0.1:1/0"); code != 1 || !strings.Contains(errs, "MCPGATE_REDIS_ENTRA") {
		t.Fatalf("bad env: %d %s", code, errs)
	}
}
