package upstream

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc/oidctest"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
)

// fakeIdP is a minimal OIDC provider (go-oidc's oidctest for discovery and keys) whose token
// endpoint the test scripts. It stands in for answers the real fixture cannot produce: a
// refresh without ID token, AADSTS errors, broken responses, a different subject.
type fakeIdP struct {
	srv   *httptest.Server
	key   *rsa.PrivateKey
	mu    sync.Mutex
	forms []url.Values
	basic []string
	token func(w http.ResponseWriter, form url.Values)
}

func newFakeIdP(t *testing.T) *fakeIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIdP{key: key}
	o := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: key.Public(), KeyID: "k1", Algorithm: "RS256"}}}
	mux := http.NewServeMux()
	mux.Handle("/", o)
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		u, p, _ := r.BasicAuth()
		f.mu.Lock()
		f.forms = append(f.forms, r.PostForm)
		f.basic = append(f.basic, u+":"+p)
		h := f.token
		f.mu.Unlock()
		h(w, r.PostForm)
	})
	f.srv = httptest.NewServer(mux)
	o.SetIssuer(f.srv.URL)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIdP) idToken(sub, nonce string, extra map[string]any) string {
	c := map[string]any{"iss": f.srv.URL, "aud": "client-1", "sub": sub, "exp": time.Now().Add(time.Hour).Unix(),
		"iat": time.Now().Unix(), "name": "Ann", "tid": "tenant-1", "oid": "oid-" + sub, "roles": []string{"Admin"}}
	if nonce != "" {
		c["nonce"] = nonce
	}
	for k, v := range extra {
		c[k] = v
	}
	b, _ := json.Marshal(c)
	return oidctest.SignIDToken(f.key, "k1", "RS256", string(b))
}

func jsonReply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeIdP) provider(t *testing.T, cfg Config) *OIDC {
	t.Helper()
	cfg.Issuer = f.srv.URL
	cfg.ClientID = "client-1"
	cfg.RedirectURL = "http://127.0.0.1:8000/oauth-callback"
	o, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestAuthCodeURL(t *testing.T) {
	f := newFakeIdP(t)
	o := f.provider(t, Config{ClientSecret: "s", Scopes: []string{"User.Read", "openid"}})
	u, err := url.Parse(o.AuthCodeURL("st", "no", "verifier-verifier-verifier-verifier-verifier"))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("state") != "st" || q.Get("nonce") != "no" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" ||
		q.Get("response_type") != "code" || q.Get("client_id") != "client-1" || q.Get("scope") != "openid profile offline_access User.Read" {
		t.Errorf("query = %v", q)
	}
	if q.Has("resource") || q.Has("client_secret") {
		t.Errorf("query carries resource or secret: %v", q)
	}
}

func TestExchangeWithClientAssertion(t *testing.T) {
	f := newFakeIdP(t)
	f.token = func(w http.ResponseWriter, form url.Values) {
		jsonReply(w, 200, map[string]any{"access_token": "at", "refresh_token": "rt", "token_type": "Bearer",
			"expires_in": 3600, "id_token": f.idToken("u1", "n1", nil)})
	}
	var calls int
	o := f.provider(t, Config{ClientAssertion: func(context.Context) (string, error) { calls++; return "mi-assertion", nil }})
	u, tok, err := o.Exchange(t.Context(), "code-1", "ver", "n1")
	if err != nil {
		t.Fatal(err)
	}
	want := identity.User{Subject: "u1", ObjectID: "oid-u1", TenantID: "tenant-1", Issuer: f.srv.URL, Name: "Ann", Roles: []string{"Admin"}}
	if fmt.Sprint(u) != fmt.Sprint(want) || tok.RefreshToken != "rt" || tok.AccessToken != "at" {
		t.Errorf("user = %+v", u)
	}
	form := f.forms[0]
	if form.Get("client_assertion") != "mi-assertion" || form.Get("client_assertion_type") != ClientAssertionType ||
		form.Get("client_id") != "client-1" || form.Has("client_secret") || f.basic[0] != ":" ||
		form.Get("code_verifier") != "ver" || form.Has("resource") {
		t.Errorf("exchange form = %v basic=%q", form, f.basic[0])
	}

	// Refresh without a new ID token: previous identity, old refresh token kept.
	f.token = func(w http.ResponseWriter, form url.Values) {
		jsonReply(w, 200, map[string]any{"access_token": "at2", "token_type": "Bearer", "expires_in": 60})
	}
	u2, tok2, err := o.Refresh(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if u2.Subject != "u1" || u2.TenantID != "tenant-1" || tok2.AccessToken != "at2" || tok2.RefreshToken != "rt" || tok2.IDToken != tok.IDToken {
		t.Errorf("refresh without id_token: user %+v", u2)
	}
	rf := f.forms[1]
	if rf.Get("grant_type") != "refresh_token" || rf.Get("refresh_token") != "rt" || rf.Get("client_assertion") != "mi-assertion" ||
		rf.Get("client_id") != "client-1" || calls != 2 {
		t.Errorf("refresh form = %v, assertion calls %d", rf, calls)
	}

	// A refreshed ID token for another subject is refused.
	f.token = func(w http.ResponseWriter, form url.Values) {
		jsonReply(w, 200, map[string]any{"access_token": "at3", "id_token": f.idToken("u2", "", nil)})
	}
	if _, _, err := o.Refresh(t.Context(), tok); err == nil || !strings.Contains(err.Error(), "another subject") {
		t.Errorf("subject switch: %v", err)
	}
	// New claims come through (roles re-checked by policy).
	f.token = func(w http.ResponseWriter, form url.Values) {
		jsonReply(w, 200, map[string]any{"access_token": "at3", "id_token": f.idToken("u1", "", map[string]any{"roles": []string{}})})
	}
	if u3, _, err := o.Refresh(t.Context(), tok); err != nil || len(u3.Roles) != 0 {
		t.Errorf("refresh with new claims: %+v, %v", u3, err)
	}
	// An assertion failure is an *Error.
	bad := f.provider(t, Config{ClientAssertion: func(context.Context) (string, error) { return "", errors.New("no MI") }})
	if _, _, err := bad.Exchange(t.Context(), "c", "v", "n"); asError(t, err).Code != "client_assertion_failed" {
		t.Errorf("assertion failure: %v", err)
	}
}

func TestSecretSentWithBasicAuth(t *testing.T) {
	f := newFakeIdP(t)
	f.token = func(w http.ResponseWriter, form url.Values) {
		jsonReply(w, 200, map[string]any{"access_token": "at", "refresh_token": "rt2", "id_token": f.idToken("u1", "n", nil)})
	}
	o := f.provider(t, Config{ClientSecret: "p@ss word"})
	_, tok, err := o.Exchange(t.Context(), "c", "v", "n")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := o.Refresh(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	for i, form := range f.forms {
		if form.Has("client_secret") || f.basic[i] != "client-1:p%40ss+word" {
			t.Errorf("request %d: form %v basic %q", i, form, f.basic[i])
		}
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	f := newFakeIdP(t)
	o := f.provider(t, Config{ClientSecret: "s"})
	old := identity.Tokens{RefreshToken: "rt", IDToken: f.idToken("u1", "", nil)}
	tests := []struct {
		name   string
		reply  func(w http.ResponseWriter)
		code   string
		aadsts string
	}{
		{"aadsts", func(w http.ResponseWriter) {
			jsonReply(w, 400, map[string]any{"error": "invalid_grant", "error_description": "AADSTS50173: The provided grant has expired due to it being revoked.\r\nTrace ID: x"})
		}, "invalid_grant", "AADSTS50173"},
		{"html 500", func(w http.ResponseWriter) { http.Error(w, "<html>oops</html>", http.StatusInternalServerError) }, "server_error", ""},
		{"503", func(w http.ResponseWriter) { http.Error(w, "busy", http.StatusServiceUnavailable) }, "temporarily_unavailable", ""},
		{"200 without access token", func(w http.ResponseWriter) { jsonReply(w, 200, map[string]any{"token_type": "Bearer"}) }, "server_error", ""},
		{"200 error member", func(w http.ResponseWriter) { jsonReply(w, 200, map[string]any{"error": "invalid_client"}) }, "invalid_client", ""},
		{"bad id token", func(w http.ResponseWriter) {
			jsonReply(w, 200, map[string]any{"access_token": "a", "id_token": "x.y.z"})
		}, "invalid_id_token", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.token = func(w http.ResponseWriter, _ url.Values) { tt.reply(w) }
			_, _, err := o.Refresh(t.Context(), old)
			e := asError(t, err)
			if e.Code != tt.code || e.AADSTS != tt.aadsts {
				t.Errorf("error = %+v, want %s %s", e, tt.code, tt.aadsts)
			}
			// Exchange maps the same answers.
			if tt.name == "aadsts" {
				_, _, err := o.Exchange(t.Context(), "c", "v", "n")
				if e := asError(t, err); e.Code != "invalid_grant" || e.AADSTS != "AADSTS50173" {
					t.Errorf("exchange error = %+v", e)
				}
			}
		})
	}
	if _, _, err := o.Refresh(t.Context(), identity.Tokens{}); asError(t, err).Code != "invalid_grant" {
		t.Errorf("refresh without refresh token: %v", err)
	}
	f.srv.Close()
	if _, _, err := o.Refresh(t.Context(), old); !asError(t, err).Temporary() {
		t.Errorf("unreachable IdP: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	f := newFakeIdP(t)
	for _, cfg := range []Config{
		{},
		{Issuer: f.srv.URL, ClientID: "c"},
		{Issuer: f.srv.URL, ClientID: "c", RedirectURL: "http://x/cb", ClientSecret: "s",
			ClientAssertion: func(context.Context) (string, error) { return "", nil }},
	} {
		if _, err := New(t.Context(), cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestFromCallbackAndExplain(t *testing.T) {
	if FromCallback(url.Values{"code": {"x"}}) != nil {
		t.Error("error from a success callback")
	}
	e := FromCallback(url.Values{"error": {"access_denied"}, "error_description": {"AADSTS50105: Your administrator has configured the application to block users unless they are specifically granted access."}})
	if e == nil || e.Code != "access_denied" || e.AADSTS != "AADSTS50105" || !strings.Contains(e.Error(), "access_denied") {
		t.Fatalf("FromCallback = %+v", e)
	}
	long := FromCallback(url.Values{"error": {strings.Repeat("e", 500)}, "error_description": {strings.Repeat("d", 5000)}})
	if len(long.Code) > 100 || len(long.Description) > maxDescription+4 {
		t.Error("error not bounded")
	}
	for _, e := range []*Error{nil, {Code: "access_denied"}, {Code: "weird"}, {Code: "invalid_grant", AADSTS: "AADSTS1"}} {
		if title, hint := Explain(e); title == "" || hint == "" {
			t.Errorf("Explain(%+v) empty", e)
		}
	}
}

func FuzzFromCallback(f *testing.F) {
	f.Add("access_denied", "AADSTS50105: blocked", "")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, code, desc, uri string) {
		e := FromCallback(url.Values{"error": {code}, "error_description": {desc}, "error_uri": {uri}})
		if code == "" {
			if e != nil {
				t.Fatal("error without code")
			}
			return
		}
		if e.AADSTS != "" && !strings.HasPrefix(e.AADSTS, "AADSTS") {
			t.Fatalf("AADSTS %q", e.AADSTS)
		}
		_, _ = Explain(e)
		_ = e.Error()
	})
}

func FuzzUnverifiedUser(f *testing.F) {
	f.Add("a.eyJzdWIiOiJ4In0.c")
	f.Add("...")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = UnverifiedUser(s)
	})
}
