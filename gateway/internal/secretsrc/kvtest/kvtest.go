// Package kvtest is a test double for Azure Key Vault's secrets API, shared by the tests of
// the packages that keep secrets there through azsecrets (secretsrc, keyrotation). Only
// _test.go files may import it (TestOnlyTestsImport checks).
package kvtest

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/mcpgate/mcpgate/gateway/internal/secretsrc"
)

// Token is the access token Cred issues and the only one Vault (and other fakes of a test)
// should accept.
const Token = "fake-access-token"

// Tenant is the tenant Vault's bearer challenge names.
const Tenant = "00000000-0000-0000-0000-000000000001"

// Cred is an azcore.TokenCredential that issues Token for an hour and remembers the scopes
// and tenant of the last request. The zero value is ready to use.
type Cred struct {
	mu     sync.Mutex
	scopes []string
	tenant string
}

// GetToken implements azcore.TokenCredential.
func (c *Cred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scopes, c.tenant = o.Scopes, o.TenantID
	return azcore.AccessToken{Token: Token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// LastRequest returns the scopes and tenant of the last token request.
func (c *Cred) LastRequest() (scopes []string, tenant string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scopes, c.tenant
}

// Vault speaks the Key Vault secrets REST contract closely enough for azsecrets: an
// api-version query is required; a request without "Bearer "+Token gets the 401 bearer
// challenge (authorization in Tenant, resource https://vault.azure.net) that the client
// answers by fetching a token; GET /secrets/{name}[/{version}] answers the current value or
// 404 SecretNotFound; PUT /secrets/{name} with {"value"} sets it. Use NewVault.
type Vault struct {
	mu      sync.Mutex
	secrets map[string]string
	puts    int
	failPut bool
}

// NewVault returns a vault holding a copy of secrets (name → value).
func NewVault(secrets map[string]string) *Vault {
	s := maps.Clone(secrets)
	if s == nil {
		s = map[string]string{}
	}
	return &Vault{secrets: s}
}

// Secret returns the current value of the secret name ("" if there is none).
func (v *Vault) Secret(name string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.secrets[name]
}

// SetSecret sets the secret name behind the client's back (not counted as a PUT).
func (v *Vault) SetSecret(name, value string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.secrets[name] = value
}

// Puts returns how many PUTs have succeeded.
func (v *Vault) Puts() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.puts
}

// FailNextPut makes the next PUT answer 403 Forbidden (the caller lacks the write role)
// without changing anything.
func (v *Vault) FailNextPut() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.failPut = true
}

// ServeHTTP implements http.Handler.
func (v *Vault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("api-version") == "" {
		http.Error(w, "missing api-version", http.StatusBadRequest)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+Token {
		w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/`+Tenant+`", resource="https://vault.azure.net"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 2 || parts[0] != "secrets" {
		http.NotFound(w, r)
		return
	}
	name := parts[1]
	v.mu.Lock()
	defer v.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	id := "https://" + r.Host + "/secrets/" + name + "/"
	switch r.Method {
	case http.MethodGet:
		val, ok := v.secrets[name]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":{"code":"SecretNotFound","message":"A secret with (name/id) `+name+` was not found in this key vault."}}`)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"value": val, "id": id + "v1", "attributes": map[string]any{"enabled": true}})
	case http.MethodPut:
		if v.failPut {
			v.failPut = false
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"error":{"code":"Forbidden","message":"Caller is not authorized to perform action on resource."}}`)
			return
		}
		var body struct {
			Value string `json:"value"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		v.secrets[name] = body.Value
		v.puts++
		_ = json.NewEncoder(w).Encode(map[string]any{"value": body.Value, "id": id + "v2", "attributes": map[string]any{"enabled": true}})
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// Serve serves v on a TLS test server closed when t ends.
func Serve(t testing.TB, v *Vault) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(v)
	t.Cleanup(srv.Close)
	return srv
}

// ClientOptions are azsecrets options for srv: its TLS client, no retries (so tests count
// requests exactly) and, as srv is not a *.vault.azure.net host, no check that the challenge's
// resource matches the vault's domain.
func ClientOptions(srv *httptest.Server) *azsecrets.ClientOptions {
	return &azsecrets.ClientOptions{
		ClientOptions:                        azcore.ClientOptions{Transport: srv.Client(), Retry: policy.RetryOptions{MaxRetries: -1}},
		DisableChallengeResourceVerification: true,
	}
}

// Start serves v (see Serve) and returns a secretsrc.KeyVault for the secret name on it,
// authenticated by cred (a new Cred if nil) with ClientOptions.
func Start(t testing.TB, v *Vault, name string, cred *Cred) *secretsrc.KeyVault {
	t.Helper()
	if cred == nil {
		cred = &Cred{}
	}
	srv := Serve(t, v)
	kv, err := secretsrc.NewKeyVault(srv.URL, name, cred, ClientOptions(srv))
	if err != nil {
		t.Fatal(err)
	}
	return kv
}
