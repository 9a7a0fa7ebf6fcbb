package storage_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/functionapp/storage"
	"github.com/mcpgate/mcpgate/functionapp/storage/storagetest"
)

func TestDir(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		d, err := storage.NewDir(filepath.Join(t.TempDir(), "snippets"))
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

func TestDirIgnoresForeignFiles(t *testing.T) {
	dir := t.TempDir()
	d, err := storage.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{".tmp-123", "notes.txt", ".x.json"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	names, err := d.List(t.Context())
	if err != nil || len(names) != 0 {
		t.Fatalf("List = %v, %v; want nothing", names, err)
	}
}

func TestValidateName(t *testing.T) {
	good := []string{"a", "A-Z_0.9", "x.json", strings.Repeat("n", 128), "-", "_", "a..b"}
	for _, n := range good {
		if err := storage.ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", n, err)
		}
	}
	bad := []string{"", ".", ".a", "a/b", "a\\b", "a b", strings.Repeat("n", 129), "ü", "a\n", "a*", "%2e%2e"}
	for _, n := range bad {
		err := storage.ValidateName(n)
		if !errors.Is(err, storage.ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", n, err)
		}
	}
}

func TestOpen(t *testing.T) {
	if _, _, err := storage.Open(storage.Config{ConnectionString: "UseDevelopmentStorage=true"}); err == nil ||
		!strings.Contains(err.Error(), "spell the Azurite connection string out") {
		t.Fatalf("UseDevelopmentStorage=true: %v", err)
	}
	secret := "AccountKey=c2VjcmV0"
	if _, _, err := storage.Open(storage.Config{ConnectionString: "garbage;" + secret}); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("bad connection string: %v (must fail without echoing it)", err)
	}
	_, desc, err := storage.Open(storage.Config{ConnectionString: "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2024&sig=SECRETSIG"})
	if err != nil || strings.Contains(desc, "SECRETSIG") || !strings.Contains(desc, "https://acct.blob.core.windows.net/") {
		t.Fatalf("SAS connection string: %v, description %q (must not hold the signature)", err, desc)
	}
	if _, _, err := storage.Open(storage.Config{AccountName: "acct", Credential: "password"}); err == nil {
		t.Fatal("unsupported credential kind accepted")
	}
	var s storage.Store
	s, desc, err = storage.Open(storage.Config{AccountName: "acct", Credential: "managedidentity", ClientID: "00000000-0000-0000-0000-000000000001"})
	if err != nil || !strings.Contains(desc, "https://acct.blob.core.windows.net/") {
		t.Fatalf("managed identity: %v, %q", err, desc)
	}
	if _, ok := s.(*storage.Blob); !ok {
		t.Fatalf("managed identity config gave %T", s)
	}
	dir := filepath.Join(t.TempDir(), "s")
	s, desc, err = storage.Open(storage.Config{Dir: dir})
	if err != nil || desc != "directory "+dir {
		t.Fatalf("dir: %v, %q", err, desc)
	}
	if _, ok := s.(*storage.Dir); !ok {
		t.Fatalf("dir config gave %T", s)
	}
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"a", ".a", "../etc/passwd", "a/b", strings.Repeat("z", 128), "é", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := storage.ValidateName(name)
		if err != nil {
			if !errors.Is(err, storage.ErrInvalidName) {
				t.Fatalf("error does not wrap ErrInvalidName: %v", err)
			}
			return
		}
		if len(name) == 0 || len(name) > storage.MaxNameLen || name[0] == '.' ||
			strings.ContainsAny(name, "/\\\x00 ") || filepath.Base(name) != name || name == ".." {
			t.Fatalf("accepted unsafe name %q", name)
		}
		for _, r := range name {
			if r > 127 {
				t.Fatalf("accepted non-ASCII name %q", name)
			}
		}
	})
}
