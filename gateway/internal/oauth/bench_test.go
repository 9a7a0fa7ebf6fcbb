package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/mcpgate/mcpgate/gateway/internal/store/redistest"
)

func redisEnv(b *testing.B) *env {
	b.Helper()
	srv := redistest.Start(b)
	st, err := store.NewRedis(context.Background(), store.RedisOptions{URL: srv.URL()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return newEnvWithStore(b, st)
}

// BenchmarkTokenExchangeRedis measures POST /token with grant_type=authorization_code against
// a real redis-server: client lookup, code GETDEL and decryption, PKCE, grant issue (sealing
// both tokens, storing the grant), the used-code tombstone and the JSON answer.
func BenchmarkTokenExchangeRedis(b *testing.B) {
	e := redisEnv(b)
	c := e.register(b, map[string]any{})
	verifier, challenge := pkce()
	codes := make([]string, b.N)
	for i := range codes {
		codes[i] = randomToken(32)
		err := e.srv.putRecord(context.Background(), kindCode, codes[i], codeRecord{
			ClientID: c.ID, RedirectURI: c.Redirect, Challenge: challenge, Resource: testPublic + "/mcp", Scope: ScopeTools,
			User:   identity.User{Subject: "bench", ObjectID: "bench"},
			Tokens: identity.Tokens{AccessToken: "up-at", RefreshToken: "up-rt", Expiry: time.Now().Add(time.Hour)},
		}, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
	}
	form := url.Values{"grant_type": {"authorization_code"}, "redirect_uri": {c.Redirect}, "client_id": {c.ID}, "code_verifier": {verifier}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		form.Set("code", codes[i])
		req := httptest.NewRequest(http.MethodPost, testPublic+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("token: %d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkAuthorizationFlowRedis measures a whole flow with remembered consent against a
// real redis-server: /authorize → (fake IdP) → /oauth-callback → /token.
func BenchmarkAuthorizationFlowRedis(b *testing.B) {
	e := redisEnv(b)
	c := e.register(b, map[string]any{})
	br := newBrowser(e.h)
	_, ch := pkce()
	e.authorize(b, br, c, ch, nil) // consent once
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		v, ch := pkce()
		res := e.authorize(b, br, c, ch, nil)
		resp, _ := e.token(b, url.Values{"grant_type": {"authorization_code"}, "code": {res.Redirect.Query().Get("code")}, "redirect_uri": {c.Redirect}, "client_id": {c.ID}, "code_verifier": {v}})
		if resp.StatusCode != http.StatusOK {
			b.Fatal(resp.StatusCode)
		}
	}
}
