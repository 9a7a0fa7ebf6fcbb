package secretsrc_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/mcpgate/mcpgate/gateway/internal/secretsrc"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
)

var (
	_ secretsrc.Source = (*secretsrc.File)(nil)
	_ secretsrc.Writer = (*secretsrc.File)(nil)
	_ secretsrc.Source = (*secretsrc.KeyVault)(nil)
	_ secretsrc.Writer = (*secretsrc.KeyVault)(nil)
)

func TestFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state", "secret")
	f := secretsrc.NewFile(path)
	if _, err := f.Get(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Get missing: %v, want fs.ErrNotExist", err)
	}
	if err := f.Put(ctx, []byte("s3cret\n")); err != nil {
		t.Fatal(err)
	}
	got, err := f.Get(ctx)
	if err != nil || string(got) != "s3cret\n" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if err := f.Put(ctx, []byte("two")); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Get(ctx); string(got) != "two" {
		t.Fatalf("after overwrite: %q", got)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, want 0600", st.Mode().Perm())
	}
	dst, _ := os.Stat(filepath.Dir(path))
	if dst.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v, want 0700", dst.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	if strings.Contains(f.Describe(), "two") {
		t.Fatal("Describe shows the value")
	}
}

func TestEnsureLocalRing(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".mcpgate", "session-keys.json")
	created, err := secretsrc.EnsureLocalRing(path)
	if err != nil || !created {
		t.Fatalf("first call: %v, %v", created, err)
	}
	doc, _ := os.ReadFile(path)
	r, err := session.ParseRing(doc)
	if err != nil {
		t.Fatalf("created ring does not parse: %v", err)
	}
	if len(r.Keys()) != 1 || r.Keys()[0].State != session.StateActive {
		t.Fatalf("ring keys: %+v", len(r.Keys()))
	}
	created, err = secretsrc.EnsureLocalRing(path)
	if err != nil || created {
		t.Fatalf("second call: %v, %v", created, err)
	}
	doc2, _ := os.ReadFile(path)
	if string(doc) != string(doc2) {
		t.Fatal("existing ring overwritten")
	}
}

func TestEnsureLocalRingRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ring.json")
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for range 8 {
		wg.Go(func() {
			c, err := secretsrc.EnsureLocalRing(path)
			if err != nil {
				t.Error(err)
			}
			if c {
				mu.Lock()
				created++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if created != 1 {
		t.Fatalf("%d callers created the ring", created)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("leftover files: %d entries", len(entries))
	}
}

// fakeCred is an azcore.TokenCredential that counts calls and returns a fixed token.
type fakeCred struct {
	mu     sync.Mutex
	scopes []string
	tenant string
}

func (c *fakeCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scopes, c.tenant = o.Scopes, o.TenantID
	return azcore.AccessToken{Token: "fake-access-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// fakeVault speaks the Key Vault secrets REST contract closely enough for azsecrets: the
// unauthenticated first request gets the 401 bearer challenge, then GET and PUT of secrets.
type fakeVault struct {
	mu      sync.Mutex
	secrets map[string]string
	version int
}

func (v *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("api-version") == "" {
		http.Error(w, "missing api-version", http.StatusBadRequest)
		return
	}
	if r.Header.Get("Authorization") != "Bearer fake-access-token" {
		w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001", resource="https://vault.azure.net"`)
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
		var body struct {
			Value string `json:"value"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		v.secrets[name] = body.Value
		v.version++
		_ = json.NewEncoder(w).Encode(map[string]any{"value": body.Value, "id": id + "v2", "attributes": map[string]any{"enabled": true}})
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func TestKeyVault(t *testing.T) {
	ctx := t.Context()
	fv := &fakeVault{secrets: map[string]string{}}
	srv := httptest.NewTLSServer(fv)
	defer srv.Close()
	cred := &fakeCred{}
	opts := &azsecrets.ClientOptions{
		ClientOptions:                        azcore.ClientOptions{Transport: srv.Client()},
		DisableChallengeResourceVerification: true,
	}
	kv, err := secretsrc.NewKeyVault(srv.URL, "session-keys", cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Get missing: %v, want fs.ErrNotExist", err)
	}
	cred.mu.Lock()
	if len(cred.scopes) != 1 || cred.scopes[0] != "https://vault.azure.net/.default" || cred.tenant != "00000000-0000-0000-0000-000000000001" {
		t.Fatalf("token requested for %v tenant %q", cred.scopes, cred.tenant)
	}
	cred.mu.Unlock()
	doc, err := secretsrc.NewRingDocument(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Put(ctx, doc); err != nil {
		t.Fatal(err)
	}
	got, err := kv.Get(ctx)
	if err != nil || string(got) != string(doc) {
		t.Fatalf("Get after Put: %v", err)
	}
	if _, err := session.ParseRing(got); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(kv.Describe(), string(doc)) {
		t.Fatal("Describe shows the value")
	}
	if _, err := secretsrc.NewKeyVault("http://vault.example", "x", cred, nil); err == nil {
		t.Fatal("accepted a plain-http vault URL")
	}
}

// TestKeyVaultRefusesForeignChallenge: without DisableChallengeResourceVerification the client
// refuses a challenge for a resource that is not the vault's domain.
func TestKeyVaultRefusesForeignChallenge(t *testing.T) {
	srv := httptest.NewTLSServer(&fakeVault{secrets: map[string]string{"s": "v"}})
	defer srv.Close()
	kv, err := secretsrc.NewKeyVault(srv.URL, "s", &fakeCred{}, &azsecrets.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: srv.Client()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(t.Context()); err == nil {
		t.Fatal("Get succeeded against a vault whose challenge names another domain")
	}
}
