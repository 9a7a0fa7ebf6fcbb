package clients

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseMetadata(t *testing.T) {
	long := strings.Repeat("a", 2100)
	tests := []struct {
		name     string
		body     string
		code     string // expected error code, "" for success
		appType  string
		auth     string
		grants   []string
		scope    string
		redirect []string
	}{
		{name: "minimal loopback", body: `{"redirect_uris":["http://127.0.0.1:3000/cb"]}`,
			appType: "native", auth: AuthClientSecretBasic, grants: []string{"authorization_code", "refresh_token"}},
		{name: "mcp-remote style", body: `{"application_type":"native","client_name":"MCP CLI Client","grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none","redirect_uris":["http://localhost:5678/oauth/callback"],"scope":"mcp:tools"}`,
			appType: "native", auth: AuthNone, grants: []string{"authorization_code", "refresh_token"}, scope: "mcp:tools"},
		{name: "https is web", body: `{"redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"token_endpoint_auth_method":"client_secret_post"}`,
			appType: "web", auth: AuthClientSecretPost},
		{name: "https plus loopback is web", body: `{"redirect_uris":["https://vscode.dev/redirect","http://127.0.0.1:33418"]}`, appType: "web"},
		{name: "private-use is native", body: `{"redirect_uris":["com.example.app:/oauth2redirect"]}`, appType: "native"},
		{name: "single-label private-use scheme", body: `{"redirect_uris":["cursor://anysphere.cursor-retrieval/oauth/cb"]}`, appType: "native"},
		{name: "ipv6 loopback", body: `{"redirect_uris":["http://[::1]:8080/cb"]}`, appType: "native"},
		{name: "explicit native with https", body: `{"application_type":"native","redirect_uris":["https://app.example.com/cb"]}`, appType: "native"},
		{name: "duplicate redirect collapses", body: `{"redirect_uris":["https://a.example/cb","https://a.example/cb"]}`, redirect: []string{"https://a.example/cb"}},
		{name: "authorization_code only", body: `{"redirect_uris":["https://a.example/cb"],"grant_types":["authorization_code"]}`, grants: []string{"authorization_code"}},
		{name: "scope dedupe", body: `{"redirect_uris":["https://a.example/cb"],"scope":"offline_access mcp:tools offline_access"}`, scope: "offline_access mcp:tools"},
		{name: "unknown members ignored", body: `{"redirect_uris":["https://a.example/cb"],"software_id":"x","contacts":["a@b"],"jwks":{}}`},

		{name: "empty", body: ``, code: ErrCodeInvalidClientMetadata},
		{name: "null", body: `null`, code: ErrCodeInvalidClientMetadata},
		{name: "array", body: `[]`, code: ErrCodeInvalidClientMetadata},
		{name: "string", body: `"x"`, code: ErrCodeInvalidClientMetadata},
		{name: "truncated", body: `{"redirect_uris":["https://a.example/cb"]`, code: ErrCodeInvalidClientMetadata},
		{name: "trailing data", body: `{"redirect_uris":["https://a.example/cb"]}{}`, code: ErrCodeInvalidClientMetadata},
		{name: "trailing garbage", body: `{"redirect_uris":["https://a.example/cb"]} x`, code: ErrCodeInvalidClientMetadata},
		{name: "redirect_uris a string", body: `{"redirect_uris":"https://a.example/cb"}`, code: ErrCodeInvalidClientMetadata},
		{name: "redirect_uris numbers", body: `{"redirect_uris":[1]}`, code: ErrCodeInvalidClientMetadata},
		{name: "invalid utf8", body: "{\"client_name\":\"\xff\",\"redirect_uris\":[\"https://a.example/cb\"]}", code: ErrCodeInvalidClientMetadata},
		{name: "no redirect_uris", body: `{"client_name":"x"}`, code: ErrCodeInvalidRedirectURI},
		{name: "empty redirect_uris", body: `{"redirect_uris":[]}`, code: ErrCodeInvalidRedirectURI},
		{name: "eleven redirect_uris", body: `{"redirect_uris":["https://a.example/1","https://a.example/2","https://a.example/3","https://a.example/4","https://a.example/5","https://a.example/6","https://a.example/7","https://a.example/8","https://a.example/9","https://a.example/10","https://a.example/11"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "http non-loopback", body: `{"redirect_uris":["http://evil.example/cb"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "http 127.0.0.2", body: `{"redirect_uris":["http://127.0.0.2/cb"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "http loopback userinfo", body: `{"redirect_uris":["http://user@127.0.0.1/cb"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "http loopback bad port", body: `{"redirect_uris":["http://127.0.0.1:0/cb"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "https fragment", body: `{"redirect_uris":["https://a.example/cb#x"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "https empty fragment", body: `{"redirect_uris":["https://a.example/cb#"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "https no host", body: `{"redirect_uris":["https:///cb"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "https opaque", body: `{"redirect_uris":["https:evil.example"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "https userinfo", body: `{"redirect_uris":["https://a.example@evil.example/cb"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "upper-case scheme", body: `{"redirect_uris":["HTTPS://a.example/cb"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "javascript", body: `{"redirect_uris":["javascript:alert(1)"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "data", body: `{"redirect_uris":["data:text/html,x"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "file", body: `{"redirect_uris":["file:///etc/passwd"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "vbscript", body: `{"redirect_uris":["vbscript:x"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "relative", body: `{"redirect_uris":["/cb"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "drive letter", body: `{"redirect_uris":["c:/cb"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "whitespace", body: `{"redirect_uris":["https://a.example/c b"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "control char", body: `{"redirect_uris":["https://a.example/cb\u0000"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "backslash", body: `{"redirect_uris":["https://a.example\\@evil.example/cb"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "too long", body: `{"redirect_uris":["https://a.example/` + long + `"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "web with private-use", body: `{"application_type":"web","redirect_uris":["com.example.app:/cb"]}`, code: ErrCodeInvalidRedirectURI},
		{name: "bad application_type", body: `{"application_type":"browser","redirect_uris":["https://a.example/cb"]}`, code: ErrCodeInvalidClientMetadata},
		{name: "implicit grant", body: `{"redirect_uris":["https://a.example/cb"],"grant_types":["implicit"]}`, code: ErrCodeInvalidClientMetadata},
		{name: "client_credentials", body: `{"redirect_uris":["https://a.example/cb"],"grant_types":["authorization_code","client_credentials"]}`, code: ErrCodeInvalidClientMetadata},
		{name: "refresh only", body: `{"redirect_uris":["https://a.example/cb"],"grant_types":["refresh_token"]}`, code: ErrCodeInvalidClientMetadata},
		{name: "token response type", body: `{"redirect_uris":["https://a.example/cb"],"response_types":["token"]}`, code: ErrCodeInvalidClientMetadata},
		{name: "private_key_jwt", body: `{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, code: ErrCodeInvalidClientMetadata},
		{name: "unknown scope", body: `{"redirect_uris":["https://a.example/cb"],"scope":"mcp:tools admin"}`, code: ErrCodeInvalidClientMetadata},
		{name: "blank scope", body: `{"redirect_uris":["https://a.example/cb"],"scope":"   "}`, code: ErrCodeInvalidClientMetadata},
		{name: "long name", body: `{"redirect_uris":["https://a.example/cb"],"client_name":"` + strings.Repeat("n", 201) + `"}`, code: ErrCodeInvalidClientMetadata},
		{name: "bidi name", body: `{"redirect_uris":["https://a.example/cb"],"client_name":"abc\u202edef"}`, code: ErrCodeInvalidClientMetadata},
		{name: "control name", body: `{"redirect_uris":["https://a.example/cb"],"client_name":"a\nb"}`, code: ErrCodeInvalidClientMetadata},
		{name: "http client_uri", body: `{"redirect_uris":["https://a.example/cb"],"client_uri":"http://a.example"}`, code: ErrCodeInvalidClientMetadata},
		{name: "javascript logo_uri", body: `{"redirect_uris":["https://a.example/cb"],"logo_uri":"javascript:alert(1)"}`, code: ErrCodeInvalidClientMetadata},
		{name: "oversized body", body: `{"redirect_uris":["https://a.example/cb"],"x":"` + strings.Repeat("x", MaxRegistrationBody) + `"}`, code: ErrCodeInvalidClientMetadata},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseMetadata([]byte(tt.body))
			if tt.code != "" {
				var re *RegistrationError
				if !errors.As(err, &re) || re.Code != tt.code {
					t.Fatalf("err = %v, want %s", err, tt.code)
				}
				if re.Description == "" {
					t.Error("no description")
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.appType != "" && c.ApplicationType != tt.appType {
				t.Errorf("application_type = %q, want %q", c.ApplicationType, tt.appType)
			}
			if tt.auth != "" && c.TokenEndpointAuthMethod != tt.auth {
				t.Errorf("auth method = %q, want %q", c.TokenEndpointAuthMethod, tt.auth)
			}
			if tt.grants != nil && !slices.Equal(c.GrantTypes, tt.grants) {
				t.Errorf("grant_types = %v, want %v", c.GrantTypes, tt.grants)
			}
			if tt.scope != "" && c.Scope != tt.scope {
				t.Errorf("scope = %q, want %q", c.Scope, tt.scope)
			}
			if tt.redirect != nil && !slices.Equal(c.RedirectURIs, tt.redirect) {
				t.Errorf("redirect_uris = %v, want %v", c.RedirectURIs, tt.redirect)
			}
			if !slices.Equal(c.ResponseTypes, []string{"code"}) {
				t.Errorf("response_types = %v", c.ResponseTypes)
			}
		})
	}
}

// fakeClock is a settable clock for Touch and Sweep.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestRegistry(t *testing.T, dir string, clock *fakeClock, opts Options) *Registry {
	t.Helper()
	b, err := NewDirBackend(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts.Backend = b
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if clock != nil {
		opts.Now = clock.now
	}
	r, err := NewRegistry(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegisterStoresDurablyAndHashesSecret(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := newTestRegistry(t, dir, nil, Options{})
	resp, err := r.Register(ctx, []byte(`{"redirect_uris":["https://app.example/cb"],"client_name":"App"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ClientID) < 22 || len(resp.ClientSecret) < 43 || resp.ClientSecretExpiresAt == nil || *resp.ClientSecretExpiresAt != 0 {
		t.Fatalf("response = %+v", resp)
	}
	if resp.TokenEndpointAuthMethod != AuthClientSecretBasic || resp.ClientIDIssuedAt == 0 || resp.ClientName != "App" {
		t.Errorf("response metadata = %+v", resp)
	}
	js, _ := json.Marshal(resp)
	if !strings.Contains(string(js), `"client_secret_expires_at":0`) {
		t.Errorf("JSON %s lacks client_secret_expires_at 0", js)
	}
	// The stored document never holds the secret, only its hash.
	doc, err := os.ReadFile(filepath.Join(dir, resp.ClientID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(doc), resp.ClientSecret) {
		t.Fatal("secret stored in clear")
	}
	// A fresh registry (empty cache) finds the registration: it never silently expires.
	r2 := newTestRegistry(t, dir, nil, Options{})
	c, err := r2.Get(ctx, resp.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(resp.ClientSecret))
	if string(c.SecretHash) != string(sum[:]) || c.Kind != KindDynamic || c.Name != "App" {
		t.Errorf("stored client = %+v", c)
	}

	// Authentication: right secret and method only.
	if _, err := r2.Authenticate(ctx, resp.ClientID, resp.ClientSecret, AuthClientSecretBasic); err != nil {
		t.Errorf("Authenticate: %v", err)
	}
	for _, bad := range []struct{ id, secret, method string }{
		{resp.ClientID, resp.ClientSecret + "x", AuthClientSecretBasic},
		{resp.ClientID, "", AuthClientSecretBasic},
		{resp.ClientID, resp.ClientSecret, AuthClientSecretPost},
		{resp.ClientID, "", AuthNone},
		{"unknownunknownunknown0", resp.ClientSecret, AuthClientSecretBasic},
		{"../" + resp.ClientID, resp.ClientSecret, AuthClientSecretBasic},
	} {
		if _, err := r2.Authenticate(ctx, bad.id, bad.secret, bad.method); !errors.Is(err, ErrInvalidClient) {
			t.Errorf("Authenticate(%q, %q, %s) = %v, want ErrInvalidClient", bad.id, bad.secret, bad.method, err)
		}
	}

	// A public client gets no secret and authenticates with "none" only.
	pub, err := r.Register(ctx, []byte(`{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`))
	if err != nil {
		t.Fatal(err)
	}
	js, _ = json.Marshal(pub)
	if pub.ClientSecret != "" || strings.Contains(string(js), "client_secret") {
		t.Errorf("public client response %s has secret fields", js)
	}
	if _, err := r.Authenticate(ctx, pub.ClientID, "", AuthNone); err != nil {
		t.Errorf("public Authenticate: %v", err)
	}
	if _, err := r.Authenticate(ctx, pub.ClientID, "x", AuthClientSecretPost); !errors.Is(err, ErrInvalidClient) {
		t.Errorf("public client with secret: %v", err)
	}
}

func TestGetUnknownAndMalformedIDs(t *testing.T) {
	r := newTestRegistry(t, t.TempDir(), nil, Options{DisableMetadataDocuments: true})
	for _, id := range []string{"", "nope", "AAAAAAAAAAAAAAAAAAAAAA", "../../etc/passwd", strings.Repeat("a", 5000),
		"https://client.example/meta.json"} {
		if _, err := r.Get(context.Background(), id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%.40q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestTouchAndSweep(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	pre := Client{ID: "operator-app", RedirectURIs: []string{"https://op.example/cb"}, TokenEndpointAuthMethod: AuthNone}
	r := newTestRegistry(t, dir, clock, Options{Preregistered: []Client{pre}})
	old, err := r.Register(ctx, []byte(`{"redirect_uris":["https://a.example/cb"]}`))
	if err != nil {
		t.Fatal(err)
	}
	used, err := r.Register(ctx, []byte(`{"redirect_uris":["https://b.example/cb"]}`))
	if err != nil {
		t.Fatal(err)
	}

	clock.t = clock.t.Add(20 * 24 * time.Hour)
	if err := r.Touch(ctx, used.ClientID); err != nil {
		t.Fatal(err)
	}
	c, _ := r.Get(ctx, used.ClientID)
	if !c.LastUsedAt.Equal(clock.t) {
		t.Fatalf("LastUsedAt = %v, want %v", c.LastUsedAt, clock.t)
	}
	// Throttled: a second touch within the hour writes nothing.
	touched := c.LastUsedAt
	clock.t = clock.t.Add(30 * time.Minute)
	_ = r.Touch(ctx, used.ClientID)
	c, _ = r.Get(ctx, used.ClientID)
	if !c.LastUsedAt.Equal(touched) {
		t.Errorf("touch not throttled: %v", c.LastUsedAt)
	}
	if err := r.Touch(ctx, "operator-app"); err != nil {
		t.Errorf("Touch(pre-registered) = %v", err)
	}

	clock.t = clock.t.Add(11 * 24 * time.Hour) // old: 31 days unused; used: 11 days
	n, err := r.Sweep(ctx, 0)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if _, err := r.Get(ctx, old.ClientID); !errors.Is(err, ErrNotFound) {
		t.Errorf("swept client still found: %v", err)
	}
	if _, err := r.Get(ctx, used.ClientID); err != nil {
		t.Errorf("used client removed: %v", err)
	}
	if _, err := r.Get(ctx, "operator-app"); err != nil {
		t.Errorf("pre-registered client removed: %v", err)
	}
}

func TestLoadPreregistered(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := write("ok.json", `{"clients":[
	  {"client_id":"vscode","client_name":"VS Code","redirect_uris":["http://127.0.0.1/","https://vscode.dev/redirect"]},
	  {"client_id":"portal","client_secret":"s3cret","redirect_uris":["https://portal.example/cb"]},
	  {"client_id":"batch","client_secret_sha256":"`+strings.Repeat("ab", 32)+`","token_endpoint_auth_method":"client_secret_post","redirect_uris":["https://batch.example/cb"]}
	]}`)
	cs, err := LoadPreregistered(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 || !cs[0].Public() || cs[1].TokenEndpointAuthMethod != AuthClientSecretBasic || cs[2].TokenEndpointAuthMethod != AuthClientSecretPost {
		t.Fatalf("clients = %+v", cs)
	}
	r := newTestRegistry(t, t.TempDir(), nil, Options{Preregistered: cs})
	if _, err := r.Authenticate(context.Background(), "portal", "s3cret", AuthClientSecretBasic); err != nil {
		t.Errorf("Authenticate(portal) = %v", err)
	}
	c, err := r.Get(context.Background(), "vscode")
	if err != nil || c.Kind != KindPreregistered || !c.RedirectAllowed("http://127.0.0.1:33418/") {
		t.Errorf("Get(vscode) = %+v, %v", c, err)
	}
	arr := write("arr.json", `[{"client_id":"x","redirect_uris":["https://x.example/cb"]}]`)
	if cs, err := LoadPreregistered(arr); err != nil || len(cs) != 1 {
		t.Errorf("array form: %v %v", cs, err)
	}
	for name, body := range map[string]string{
		"noid.json":      `[{"redirect_uris":["https://x.example/cb"]}]`,
		"urlid.json":     `[{"client_id":"https://x.example/c","redirect_uris":["https://x.example/cb"]}]`,
		"badredir.json":  `[{"client_id":"x","redirect_uris":["http://x.example/cb"]}]`,
		"nosecret.json":  `[{"client_id":"x","token_endpoint_auth_method":"client_secret_basic","redirect_uris":["https://x.example/cb"]}]`,
		"pubsecret.json": `[{"client_id":"x","token_endpoint_auth_method":"none","client_secret":"s","redirect_uris":["https://x.example/cb"]}]`,
		"badhash.json":   `[{"client_id":"x","client_secret_sha256":"zz","redirect_uris":["https://x.example/cb"]}]`,
		"garbage.json":   `{"clients":`,
	} {
		if _, err := LoadPreregistered(write(name, body)); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if _, err := LoadPreregistered(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file loaded")
	}
}

func FuzzRegister(f *testing.F) {
	for _, s := range []string{
		`{"redirect_uris":["http://127.0.0.1:3000/cb"]}`,
		`{"application_type":"web","redirect_uris":["https://a.example/cb"],"grant_types":["authorization_code"],"scope":"mcp:tools"}`,
		`{"redirect_uris":["com.example.app:/cb"],"token_endpoint_auth_method":"none","client_name":"x","logo_uri":"https://a/l.png"}`,
		`{"redirect_uris":["javascript:alert(1)"]}`, `null`, `[]`, `{`, `{"redirect_uris":[1]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := ParseMetadata(body)
		if err != nil {
			var re *RegistrationError
			if !errors.As(err, &re) || (re.Code != ErrCodeInvalidClientMetadata && re.Code != ErrCodeInvalidRedirectURI) {
				t.Fatalf("error %v is not a RegistrationError", err)
			}
			return
		}
		if len(c.RedirectURIs) == 0 || len(c.RedirectURIs) > MaxRedirectURIs {
			t.Fatalf("accepted %d redirect URIs", len(c.RedirectURIs))
		}
		for _, r := range c.RedirectURIs {
			if strings.ContainsAny(r, "# \t\r\n") || strings.HasPrefix(strings.ToLower(r), "javascript:") ||
				strings.HasPrefix(strings.ToLower(r), "data:") || strings.HasPrefix(strings.ToLower(r), "file:") {
				t.Fatalf("accepted redirect URI %q", r)
			}
			if strings.HasPrefix(r, "http:") {
				if _, _, _, ok := splitLoopback(r); !ok {
					t.Fatalf("accepted non-loopback http redirect %q", r)
				}
			}
			if !c.RedirectAllowed(r) {
				t.Fatalf("registered redirect %q not allowed", r)
			}
		}
		if !slices.Contains(c.GrantTypes, GrantAuthorizationCode) || c.ApplicationType == "" || c.TokenEndpointAuthMethod == "" {
			t.Fatalf("incomplete client %+v", c)
		}
	})
}
