package upstream

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpgate/mcpgate/gateway/internal/identity"
)

// keysIdP is a minimal OIDC provider whose key set can fail and whose ID tokens can be signed
// by a key it does not publish: edge cases the real oidc-provider of the other tests cannot be
// made to produce on demand.
type keysIdP struct {
	srv              *httptest.Server
	published, other *rsa.PrivateKey
	keysDown         atomic.Bool
	signWithOther    atomic.Bool
}

func newKeysIdP(t *testing.T) *keysIdP {
	t.Helper()
	p := &keysIdP{}
	var err error
	if p.published, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if p.other, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *keysIdP) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": p.srv.URL, "authorization_endpoint": p.srv.URL + "/auth",
			"token_endpoint": p.srv.URL + "/token", "jwks_uri": p.srv.URL + "/jwks", "code_challenge_methods_supported": []string{"S256"},
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	case "/jwks":
		if p.keysDown.Load() {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.published.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	case "/token":
		key := p.published
		if p.signWithOther.Load() {
			key = p.other
		}
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		now := time.Now()
		idt, _ := jwt.Signed(sig).Claims(jwt.Claims{Issuer: p.srv.URL, Subject: "alice", Audience: jwt.Audience{"gw"},
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}).Serialize()
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at2", "refresh_token": "rt2", "id_token": idt, "token_type": "Bearer", "expires_in": 3600})
	default:
		http.NotFound(w, r)
	}
}

func (p *keysIdP) oidc(t *testing.T) *OIDC {
	t.Helper()
	o, err := New(t.Context(), Config{Issuer: p.srv.URL, ClientID: "gw", ClientSecret: "s", RedirectURL: "http://127.0.0.1:8000/oauth-callback"})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// cancelDuringKeys cancels the request's context when the key set is fetched, as an MCP
// client that gives up in the middle of a refresh does.
type cancelDuringKeys struct{ cancel func() }

func (c cancelDuringKeys) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/jwks" {
		c.cancel()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestRefreshWithKeysUnavailableIsTemporary: when the ID token of a refresh cannot be checked
// because the IdP's keys cannot be fetched (a fresh replica, or just after the IdP rolled its
// keys) or the request ended meanwhile, the failure is temporary, so the session survives; a
// token signed by a key the IdP does not publish is still rejected for good.
func TestRefreshWithKeysUnavailableIsTemporary(t *testing.T) {
	p := newKeysIdP(t)
	old := identity.Tokens{RefreshToken: "rt1"}

	p.keysDown.Store(true)
	_, _, err := p.oidc(t).Refresh(t.Context(), old)
	var e *Error
	if !errors.As(err, &e) || !e.Temporary() || e.Code != "temporarily_unavailable" {
		t.Fatalf("key set down: %v (want a temporary error)", err)
	}
	p.keysDown.Store(false)

	o := p.oidc(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	o.client.Transport = cancelDuringKeys{cancel: cancel}
	if _, _, err := o.Refresh(ctx, old); !errors.As(err, &e) || !e.Temporary() {
		t.Fatalf("request ended during the key fetch: %v (want a temporary error)", err)
	}

	if u, _, err := p.oidc(t).Refresh(t.Context(), old); err != nil || u.ID() == "" {
		t.Fatalf("keys back: %v", err)
	}
	p.signWithOther.Store(true)
	if _, _, err := p.oidc(t).Refresh(t.Context(), old); !errors.As(err, &e) || e.Temporary() || e.Code != "invalid_id_token" {
		t.Fatalf("token signed by an unpublished key: %v (want invalid_id_token, not temporary)", err)
	}
}
