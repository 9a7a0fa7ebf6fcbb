package grants_test

import (
	"context"
	"testing"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// BenchmarkVerifyCached is the MCP proxy's per-request cost with the grant in the replica's
// cache (the steady state): open the token, one map lookup, the checks.
func BenchmarkVerifyCached(b *testing.B) {
	_, st := startRedis(b)
	m := start(b, st, newKeeper(b), grants.Options{})
	m.SetCacheTTL(1 << 62) // keep the entry for the whole run
	ts := issue(b, m, mcpRes)
	ctx := context.Background()
	if _, err := m.Verify(ctx, ts.AccessToken, mcpRes); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Verify(ctx, ts.AccessToken, mcpRes); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVerifyRedis is the cost without the cache: one Redis GET per request.
func BenchmarkVerifyRedis(b *testing.B) {
	_, st := startRedis(b)
	m := grants.New(st, newKeeper(b), grants.Options{CacheTTL: -1})
	ts := issue(b, m, mcpRes)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Verify(ctx, ts.AccessToken, mcpRes); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssue and BenchmarkRefresh are the token endpoint's storage cost (in memory).
func BenchmarkIssue(b *testing.B) {
	m := grants.New(store.NewMemory(), newKeeper(b), grants.Options{})
	b.ReportAllocs()
	for b.Loop() {
		issue(b, m, mcpRes)
	}
}

func BenchmarkRefresh(b *testing.B) {
	m := grants.New(store.NewMemory(), newKeeper(b), grants.Options{})
	rt := issue(b, m, mcpRes).RefreshToken
	b.ReportAllocs()
	for b.Loop() {
		ts, _, err := m.Refresh(context.Background(), rt, client, nil)
		if err != nil {
			b.Fatal(err)
		}
		rt = ts.RefreshToken
	}
}

// BenchmarkVerifyCachedSerial is BenchmarkVerifyCached on one goroutine.
func BenchmarkVerifyCachedSerial(b *testing.B) {
	m := start(b, store.NewMemory(), newKeeper(b), grants.Options{})
	m.SetCacheTTL(1 << 62)
	ts := issue(b, m, mcpRes)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Verify(ctx, ts.AccessToken, mcpRes); err != nil {
			b.Fatal(err)
		}
	}
}
