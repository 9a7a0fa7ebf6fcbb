package secretsrc_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/mcpgate/mcpgate/gateway/internal/secretsrc"
	"github.com/mcpgate/mcpgate/gateway/internal/secretsrc/kvtest"
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

func TestKeyVault(t *testing.T) {
	ctx := t.Context()
	fv := kvtest.NewVault(nil)
	cred := &kvtest.Cred{}
	kv := kvtest.Start(t, fv, "session-keys", cred)
	if _, err := kv.Get(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Get missing: %v, want fs.ErrNotExist", err)
	}
	if scopes, tenant := cred.LastRequest(); len(scopes) != 1 || scopes[0] != "https://vault.azure.net/.default" || tenant != kvtest.Tenant {
		t.Fatalf("token requested for %v tenant %q", scopes, tenant)
	}
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
	if stored := fv.Secret("session-keys"); stored != string(doc) || fv.Puts() != 1 {
		t.Fatalf("vault holds %d bytes after %d PUTs, want the document after 1", len(stored), fv.Puts())
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
	srv := kvtest.Serve(t, kvtest.NewVault(map[string]string{"s": "v"}))
	kv, err := secretsrc.NewKeyVault(srv.URL, "s", &kvtest.Cred{}, &azsecrets.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: srv.Client()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(t.Context()); err == nil {
		t.Fatal("Get succeeded against a vault whose challenge names another domain")
	}
}
