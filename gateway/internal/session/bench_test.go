package session_test

import (
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/session"
)

// A payload the size of a grants access token: grant id, data key, resource, scope, client, exp.
var benchPayload = []byte(`{"g":"pJ3h2bq7xW0mYv9KcL4sT1nE8rA6dF5gH2jK3lZ9xC0","k":"q3t6w9z$C&F)J@NcRfUjXn2r5u8x/A?D","r":"https://gateway.example.com/mcp","s":"mcp:tools","c":"https://client.example.com/oauth/client-metadata.json","x":1795000000}`)

func BenchmarkSeal(b *testing.B) {
	k, _ := session.NewKey(session.StateActive, t0)
	r, _ := session.NewRing(k)
	exp := time.Now().Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Seal(session.PurposeAccess, benchPayload, exp); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	keys := make([]session.Key, 0, 4)
	for _, s := range []session.KeyState{session.StateRetired, session.StateActive, session.StateNext, session.StateRetired} {
		k, _ := session.NewKey(s, t0)
		keys = append(keys, k)
	}
	r, _ := session.NewRing(keys...)
	now := time.Now()
	tok, _ := r.Seal(session.PurposeAccess, benchPayload, now.Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Open(session.PurposeAccess, tok, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenInvalid(b *testing.B) {
	k, _ := session.NewKey(session.StateActive, t0)
	r, _ := session.NewRing(k)
	now := time.Now()
	tok, _ := r.Seal(session.PurposeAccess, benchPayload, now.Add(time.Hour))
	bad := tok[:len(tok)-2] + "AA"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Open(session.PurposeAccess, bad, now); err == nil {
			b.Fatal("opened")
		}
	}
}
