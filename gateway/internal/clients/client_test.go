package clients

import (
	"strings"
	"testing"
)

func TestRedirectAllowed(t *testing.T) {
	c := &Client{RedirectURIs: []string{
		"https://app.example.com/cb",
		"http://127.0.0.1:3000/callback",
		"http://[::1]/cb",
		"http://localhost:8080/oauth/callback?x=1",
		"com.example.app:/oauth2redirect",
	}}
	tests := []struct {
		uri  string
		want bool
	}{
		{"https://app.example.com/cb", true},
		{"https://app.example.com/cb/", false},
		{"https://app.example.com/CB", false},
		{"https://APP.example.com/cb", false},
		{"https://app.example.com:443/cb", false},
		{"https://app.example.com:8443/cb", false}, // only loopback ports vary
		{"https://app.example.com/cb?x=1", false},
		{"https://app.example.com/cb#frag", false},
		{"http://app.example.com/cb", false},
		{"http://127.0.0.1:3000/callback", true},
		{"http://127.0.0.1:51234/callback", true},
		{"http://127.0.0.1/callback", true},
		{"http://127.0.0.1:0/callback", false},
		{"http://127.0.0.1:65536/callback", false},
		{"http://127.0.0.1:51234/callback2", false},
		{"http://127.0.0.1:51234/callback?x=1", false},
		{"http://127.0.0.1:51234/callback#x", false},
		{"http://127.0.0.2:3000/callback", false},
		{"http://localhost:3000/callback", false}, // host must match the registered one
		{"https://127.0.0.1:3000/callback", false},
		{"http://127.0.0.1@evil.example:3000/callback", false},
		{"http://127.0.0.1:3000@evil.example/callback", false},
		{"http://127.0.0.1.evil.example:3000/callback", false},
		{"http://127.0.0.1:3000evil/callback", false},
		{"http://[::1]:9999/cb", true},
		{"http://[::1]/cb", true},
		{"http://[::1]:9999/cb/", false},
		{"http://[0:0:0:0:0:0:0:1]:9999/cb", false},
		{"http://localhost:1/oauth/callback?x=1", true},
		{"http://localhost:1/oauth/callback?x=2", false},
		{"http://LOCALHOST:8080/oauth/callback?x=1", false},
		{"com.example.app:/oauth2redirect", true},
		{"com.example.app:/oauth2redirect2", false},
		{"com.example.app://oauth2redirect", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := c.RedirectAllowed(tt.uri); got != tt.want {
			t.Errorf("RedirectAllowed(%q) = %v, want %v", tt.uri, got, tt.want)
		}
	}
}

func TestClientPredicates(t *testing.T) {
	c := &Client{TokenEndpointAuthMethod: AuthNone, GrantTypes: []string{GrantAuthorizationCode}}
	if !c.Public() || c.AllowsGrant(GrantRefreshToken) || !c.AllowsGrant(GrantAuthorizationCode) {
		t.Error("public client predicates wrong")
	}
	c.TokenEndpointAuthMethod = AuthClientSecretPost
	if c.Public() {
		t.Error("client_secret_post client is public")
	}
}

func FuzzRedirectAllowed(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:1234/cb", "http://[::1]:80/x?y", "https://a.example/cb",
		"http://localhost/cb", "com.example:/x", "http://127.0.0.1:/cb", "http://127.0.0.1:99999/cb"} {
		f.Add(s, s)
		f.Add(s, strings.Replace(s, "1234", "4321", 1))
	}
	f.Fuzz(func(t *testing.T, registered, candidate string) {
		c := &Client{RedirectURIs: []string{registered}}
		if !c.RedirectAllowed(candidate) || candidate == registered {
			return
		}
		// A non-identical match is only ever a loopback URI differing in the port.
		rh, _, rr, ok1 := splitLoopback(registered)
		ch, _, cr, ok2 := splitLoopback(candidate)
		if !ok1 || !ok2 || rh != ch || rr != cr || strings.Contains(candidate, "#") {
			t.Fatalf("RedirectAllowed(%q) matched registered %q", candidate, registered)
		}
	})
}
