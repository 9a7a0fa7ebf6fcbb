package upstream

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc/oidctest"

	"github.com/mcpgate/mcpgate/gateway/internal/identity"
)

const (
	tenant1 = "11111111-1111-1111-1111-111111111111"
	tenant2 = "22222222-2222-2222-2222-222222222222"
)

// entraLike serves an Entra-shaped multi-tenant discovery document at
// /organizations/v2.0 (issuer ".../{tenantid}/v2.0"), its keys and a scripted token endpoint.
type entraLike struct {
	srv      *httptest.Server
	key      *rsa.PrivateKey
	template bool
	forms    []url.Values
	reply    map[string]any
}

func newEntraLike(t *testing.T, template bool) *entraLike {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e := &entraLike{key: key, template: template}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /organizations/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		iss := e.srv.URL + "/{tenantid}/v2.0"
		if !e.template {
			iss = e.srv.URL + "/" + tenant1 + "/v2.0"
		}
		jsonReply(w, 200, map[string]any{"issuer": iss, "authorization_endpoint": e.srv.URL + "/organizations/oauth2/v2.0/authorize",
			"token_endpoint": e.srv.URL + "/organizations/oauth2/v2.0/token", "jwks_uri": e.srv.URL + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256"}, "token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"}})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		enc := base64.RawURLEncoding.EncodeToString
		jsonReply(w, 200, map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
			"n": enc(key.N.Bytes()), "e": enc(big.NewInt(int64(key.E)).Bytes())}}})
	})
	mux.HandleFunc("POST /organizations/oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		e.forms = append(e.forms, r.PostForm)
		jsonReply(w, 200, e.reply)
	})
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *entraLike) idToken(tid, iss, nonce string, extra map[string]any) string {
	c := map[string]any{"iss": iss, "aud": "client-1", "sub": "pairwise-sub", "oid": "oid-1", "tid": tid, "nonce": nonce,
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "name": "Ann", "preferred_username": "ann@contoso.com", "ver": "2.0"}
	if tid == "" {
		delete(c, "tid")
	}
	for k, v := range extra {
		c[k] = v
	}
	b, _ := json.Marshal(c)
	return oidctest.SignIDToken(e.key, "k1", "RS256", string(b))
}

func TestEntraMultiTenantIssuer(t *testing.T) {
	e := newEntraLike(t, true)
	issuer := e.srv.URL + "/organizations/v2.0"
	if !IsEntraMultiTenant(issuer) {
		t.Fatal("organizations endpoint not recognised")
	}
	o, err := New(t.Context(), Config{Issuer: issuer, ClientID: "client-1", ClientSecret: "s", RedirectURL: "http://127.0.0.1:8000/oauth-callback"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		tid    string
		iss    string
		wantOK bool
	}{
		{"tenant 1", tenant1, e.srv.URL + "/" + tenant1 + "/v2.0", true},
		{"tenant 2", tenant2, e.srv.URL + "/" + tenant2 + "/v2.0", true},
		{"issuer of another tenant", tenant1, e.srv.URL + "/" + tenant2 + "/v2.0", false},
		{"template issuer itself", tenant1, e.srv.URL + "/{tenantid}/v2.0", false},
		{"no tid", "", e.srv.URL + "/" + tenant1 + "/v2.0", false},
		{"tid not a GUID", "../x", e.srv.URL + "/../x/v2.0", false},
		{"other host", tenant1, "https://login.example/" + tenant1 + "/v2.0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.reply = map[string]any{"access_token": "at", "refresh_token": "rt", "token_type": "Bearer", "expires_in": 3600,
				"id_token": e.idToken(tt.tid, tt.iss, "n1", nil)}
			u, _, err := o.Exchange(t.Context(), "code", "verifier", "n1")
			if !tt.wantOK {
				if err == nil || asError(t, err).Code != "invalid_id_token" {
					t.Fatalf("accepted: %+v, %v", u, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.TenantID != tt.tid || u.Issuer != tt.iss || u.ObjectID != "oid-1" || u.Username != "ann@contoso.com" || u.Name != "Ann" {
				t.Errorf("user = %+v", u)
			}
		})
	}
	// A multi-tenant endpoint whose discovery issuer has no placeholder is refused at start.
	plain := newEntraLike(t, false)
	if _, err := New(t.Context(), Config{Issuer: plain.srv.URL + "/organizations/v2.0", ClientID: "c", ClientSecret: "s", RedirectURL: "http://127.0.0.1/cb"}); err == nil || !strings.Contains(err.Error(), "{tenantid}") {
		t.Fatalf("plain issuer on organizations: %v", err)
	}
}

func TestEntraIssuerAndMultiTenant(t *testing.T) {
	for tenant, want := range map[string]string{
		tenant1:          "https://login.microsoftonline.com/" + tenant1 + "/v2.0",
		"organizations":  "https://login.microsoftonline.com/organizations/v2.0",
		"Common":         "https://login.microsoftonline.com/common/v2.0",
		" " + tenant2:    "https://login.microsoftonline.com/" + tenant2 + "/v2.0",
		"contoso.com":    "",
		"../" + tenant1:  "",
		"":               "",
		tenant1 + "/x":   "",
		"organizations2": "",
	} {
		got, err := EntraIssuer("", tenant)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("EntraIssuer(%q) = %q, %v; want %q", tenant, got, err, want)
		}
	}
	if got, _ := EntraIssuer("https://login.microsoftonline.us/", tenant1); got != "https://login.microsoftonline.us/"+tenant1+"/v2.0" {
		t.Errorf("sovereign cloud issuer %q", got)
	}
	for iss, want := range map[string]bool{
		"https://login.microsoftonline.com/organizations/v2.0":   true,
		"https://login.microsoftonline.com/common/v2.0/":         true,
		"https://login.microsoftonline.com/consumers/v2.0":       true,
		"https://login.microsoftonline.com/" + tenant1 + "/v2.0": false,
		"https://login.microsoftonline.com/common":               false,
		"https://idp.example/organizations/x/v2.0":               false,
	} {
		if IsEntraMultiTenant(iss) != want {
			t.Errorf("IsEntraMultiTenant(%q) != %v", iss, want)
		}
	}
}

func TestEntraClaimsMapping(t *testing.T) {
	f := newFakeIdP(t)
	o := f.provider(t, Config{ClientSecret: "s", Scopes: []string{"User.Read"}})
	tests := []struct {
		name  string
		extra map[string]any
		check func(identity.User) bool
	}{
		{"unverified Entra email", map[string]any{"email": "a@contoso.com"}, func(u identity.User) bool { return !u.EmailVerified && u.Email == "a@contoso.com" }},
		{"xms_edov", map[string]any{"email": "a@contoso.com", "xms_edov": true}, func(u identity.User) bool { return u.EmailVerified }},
		{"xms_edov as string", map[string]any{"email": "a@contoso.com", "xms_edov": "true"}, func(u identity.User) bool { return u.EmailVerified }},
		{"email_verified", map[string]any{"email": "a@example.org", "email_verified": true}, func(u identity.User) bool { return u.EmailVerified }},
		{"verified but no email", map[string]any{"email_verified": true}, func(u identity.User) bool { return !u.EmailVerified }},
		{"groups overage", map[string]any{"_claim_names": map[string]any{"groups": "src1"}, "_claim_sources": map[string]any{"src1": map[string]any{"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}}},
			func(u identity.User) bool { return u.GroupsOverage && len(u.Groups) == 0 }},
		{"hasgroups", map[string]any{"hasgroups": true}, func(u identity.User) bool { return u.GroupsOverage }},
		{"groups listed", map[string]any{"groups": []string{"g1", "g2"}}, func(u identity.User) bool { return !u.GroupsOverage && slices.Equal(u.Groups, []string{"g1", "g2"}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.token = func(w http.ResponseWriter, form url.Values) {
				jsonReply(w, 200, map[string]any{"access_token": "at", "refresh_token": "rt", "id_token": f.idToken("u1", "n", tt.extra)})
			}
			u, _, err := o.Exchange(t.Context(), "c", "v", "n")
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(u) {
				t.Errorf("user = %+v", u)
			}
		})
	}
	// Refresh asks for the same scopes again (so Entra returns a new ID token) and never
	// sends resource.
	f.token = func(w http.ResponseWriter, form url.Values) {
		jsonReply(w, 200, map[string]any{"access_token": "at2", "id_token": f.idToken("u1", "", map[string]any{"roles": []string{"New"}})})
	}
	u, _, err := o.Refresh(t.Context(), identity.Tokens{RefreshToken: "rt", IDToken: f.idToken("u1", "", nil)})
	if err != nil || !slices.Equal(u.Roles, []string{"New"}) {
		t.Fatalf("refresh: %+v, %v", u, err)
	}
	rf := f.forms[len(f.forms)-1]
	if rf.Get("scope") != "openid profile offline_access User.Read" || rf.Has("resource") {
		t.Errorf("refresh form %v", rf)
	}
}

// TestAADSTSTable checks every row of the Entra table: a page text that names who acts, a
// client error, a page status, and itself as the bounded metric label.
func TestAADSTSTable(t *testing.T) {
	known := KnownAADSTS()
	if len(known) < 40 {
		t.Fatalf("only %d AADSTS codes mapped", len(known))
	}
	for _, code := range known {
		e := FromCallback(url.Values{"error": {"invalid_request"}, "error_description": {code + ": something. Trace ID: x"}})
		title, hint := Explain(e)
		if title == "" || !(strings.HasPrefix(hint, "What to do: ") || strings.HasPrefix(hint, "Who must act: ")) {
			t.Errorf("%s: title %q hint %q", code, title, hint)
		}
		if e.MetricAADSTS() != code {
			t.Errorf("%s: metric label %q", code, e.MetricAADSTS())
		}
		if ce := e.ClientError(); ce != "access_denied" && ce != "server_error" && ce != "temporarily_unavailable" {
			t.Errorf("%s: client error %q", code, ce)
		}
	}
	rows := []struct {
		code, aadsts string
		client       string
		status       int
		keepsSession bool
		cancelled    bool
	}{
		{"access_denied", "", "access_denied", 403, false, true},
		{"access_denied", "AADSTS65004", "access_denied", 403, false, true},
		{"access_denied", "AADSTS50105", "access_denied", 403, false, false},
		{"access_denied", "AADSTS53003", "access_denied", 403, false, false},
		{"invalid_grant", "AADSTS50076", "access_denied", 403, false, false},
		{"interaction_required", "AADSTS50079", "access_denied", 403, false, false},
		{"invalid_request", "AADSTS65001", "access_denied", 403, false, false},
		{"invalid_request", "AADSTS90094", "access_denied", 403, false, false},
		{"invalid_grant", "AADSTS50057", "access_denied", 403, false, false},
		{"invalid_request", "AADSTS50020", "access_denied", 403, false, false},
		{"invalid_grant", "AADSTS50034", "access_denied", 403, false, false},
		{"unauthorized_client", "AADSTS700016", "server_error", 502, true, false},
		{"invalid_request", "AADSTS50011", "server_error", 502, true, false},
		{"invalid_client", "AADSTS700027", "server_error", 502, true, false},
		{"invalid_client", "AADSTS70021", "server_error", 502, true, false},
		{"invalid_client", "AADSTS700024", "server_error", 502, true, false},
		{"invalid_client", "AADSTS7000215", "server_error", 502, true, false},
		{"invalid_client", "AADSTS7000222", "server_error", 502, true, false},
		{"invalid_request", "AADSTS9010010", "server_error", 502, true, false},
		{"invalid_grant", "AADSTS700082", "server_error", 502, false, false},
		{"invalid_grant", "AADSTS70008", "server_error", 502, false, false},
		{"invalid_grant", "AADSTS50173", "server_error", 502, false, false},
		{"temporarily_unavailable", "AADSTS90033", "temporarily_unavailable", 503, true, false},
		{"invalid_grant", "", "server_error", 502, false, false},
		{"server_error", "", "temporarily_unavailable", 503, true, false},
		{"client_assertion_failed", "", "server_error", 502, true, false},
		{"something_new", "", "server_error", 502, true, false},
	}
	for _, r := range rows {
		e := &Error{Code: r.code, Description: r.aadsts + ": x"}
		if e.ClientError() != r.client || e.Status() != r.status || e.Temporary() != r.keepsSession || e.Cancelled() != r.cancelled {
			t.Errorf("%s %s: client %s status %d keeps %v cancelled %v", r.code, r.aadsts, e.ClientError(), e.Status(), e.Temporary(), e.Cancelled())
		}
	}
	if l := (&Error{Code: "x", Description: "AADSTS9999999: new"}).MetricAADSTS(); l != "other" {
		t.Errorf("unknown AADSTS label %q", l)
	}
	if l := (&Error{Code: "x"}).MetricAADSTS(); l != "none" {
		t.Errorf("no AADSTS label %q", l)
	}
	if l := (&Error{Code: "<script>"}).MetricCode(); l != "other" {
		t.Errorf("unknown code label %q", l)
	}
}
