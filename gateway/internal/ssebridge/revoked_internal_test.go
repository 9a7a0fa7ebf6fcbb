package ssebridge

import (
	"fmt"
	"testing"
	"time"
)

// TestRecentRevocationsBounded: revocations are remembered for recentRevokedWindow, at most
// maxRecentRevoked of them, and a grant revoked twice is remembered from the later time.
func TestRecentRevocationsBounded(t *testing.T) {
	b := &Bridge{revoked: map[string]time.Time{}}
	t0 := time.Now()
	b.rememberRevokedLocked("g1", t0)
	b.rememberRevokedLocked("g2", t0.Add(3*time.Second))
	b.rememberRevokedLocked("g1", t0.Add(4*time.Second))
	now := t0.Add(recentRevokedWindow + time.Second)
	if !b.recentlyRevokedLocked("g1", now) || !b.recentlyRevokedLocked("g2", now) || b.recentlyRevokedLocked("g3", now) {
		t.Fatal("recent revocations lost, or an unknown grant reported")
	}
	// The first g1 entry is pruned; the second keeps g1 remembered.
	b.rememberRevokedLocked("g3", now)
	if len(b.revokedOrder) != 3 || !b.recentlyRevokedLocked("g1", now) {
		t.Fatalf("after pruning: %d entries, g1 %v", len(b.revokedOrder), b.recentlyRevokedLocked("g1", now))
	}
	later := now.Add(recentRevokedWindow)
	if b.recentlyRevokedLocked("g3", later) {
		t.Fatal("a revocation remembered beyond the window")
	}
	for i := range maxRecentRevoked + 10 {
		b.rememberRevokedLocked(fmt.Sprint("m", i), later)
	}
	if len(b.revoked) != maxRecentRevoked || len(b.revokedOrder) != maxRecentRevoked {
		t.Fatalf("%d/%d remembered, want at most %d", len(b.revoked), len(b.revokedOrder), maxRecentRevoked)
	}
	if b.recentlyRevokedLocked("m0", later) || !b.recentlyRevokedLocked(fmt.Sprint("m", maxRecentRevoked+9), later) {
		t.Fatal("the oldest should be forgotten first")
	}
}
