package session_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/session"
)

func FuzzOpen(f *testing.F) {
	k, _ := session.NewKey(session.StateActive, t0)
	r, _ := session.NewRing(k)
	for _, p := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("y"), 300)} {
		tok, _ := r.Seal(session.PurposeAccess, p, t0.Add(time.Hour))
		f.Add(tok)
		f.Add(tok[:len(tok)/2])
	}
	f.Add("")
	f.Add("AQ")
	f.Add("AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, token string) {
		got, err := r.Open(session.PurposeAccess, token, t0)
		if err != nil {
			if err != session.ErrInvalidToken || got != nil {
				t.Fatalf("Open failure = %q, %v", got, err)
			}
			return
		}
		if len(token) > session.MaxTokenLen {
			t.Fatal("over-long token opened")
		}
	})
}

func FuzzParseRing(f *testing.F) {
	k, _ := session.NewKey(session.StateActive, t0)
	n, _ := session.NewKey(session.StateNext, t0)
	r, _ := session.NewRing(k, n)
	doc, _ := r.Marshal()
	f.Add(doc)
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kid":"a","key":"AAAA","state":"active"}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		r, err := session.ParseRing(doc)
		if err != nil {
			return
		}
		// A parsed ring seals and opens, and survives a Marshal/ParseRing round trip.
		tok, err := r.Seal(session.PurposeState, []byte("p"), t0.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Open(session.PurposeState, tok, t0); err != nil {
			t.Fatal(err)
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		r2, err := session.ParseRing(out)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if r2.ActiveID() != r.ActiveID() || len(r2.Keys()) != len(r.Keys()) {
			t.Fatal("round trip changed the ring")
		}
	})
}
