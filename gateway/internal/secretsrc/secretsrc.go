// Package secretsrc reads (and writes) secrets where they live: a local file or an Azure Key
// Vault secret. Sources never log, describe or put secret values into errors.
package secretsrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/mcpgate/mcpgate/gateway/internal/session"
)

// Source yields the current value of one secret.
type Source interface {
	// Get returns the secret's current value. A secret that does not exist gives an error
	// matching errors.Is(err, fs.ErrNotExist).
	Get(ctx context.Context) ([]byte, error)
	// Describe names the source for logs (never the value).
	Describe() string
}

// Writer stores a new value of a secret.
type Writer interface {
	// Put replaces the secret's value.
	Put(ctx context.Context, value []byte) error
}

// maxFileSize bounds how much of a secret file Get reads.
const maxFileSize = 1 << 20

// File is a secret kept in a local file. It implements Source and Writer.
type File struct{ path string }

// NewFile returns a source for the whole file at path. A missing file gives an error matching
// errors.Is(err, fs.ErrNotExist).
func NewFile(path string) *File { return &File{path: path} }

// Get implements Source: it reads the whole file (at most 1 MiB).
func (f *File) Get(ctx context.Context) ([]byte, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	if st.Size() > maxFileSize {
		return nil, fmt.Errorf("read secret %s: file is larger than %d bytes", f.path, maxFileSize)
	}
	b, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", f.path, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("read secret %s: file is larger than %d bytes", f.path, maxFileSize)
	}
	return b, nil
}

// Describe implements Source.
func (f *File) Describe() string { return "file " + f.path }

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Put implements Writer: it writes value atomically (temporary file in the same directory,
// fsync, rename) with mode 0600, creating the directory with mode 0700 if needed.
func (f *File) Put(ctx context.Context, value []byte) error {
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(name)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	if _, err := tmp.Write(value); err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	if err := os.Rename(name, f.path); err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	ok = true
	return nil
}

// KeyVault is a secret in Azure Key Vault (always its latest version). It implements Source
// and Writer.
type KeyVault struct {
	client *azsecrets.Client
	vault  string
	name   string
}

// NewKeyVault returns a source for the secret secretName in the vault at vaultURL
// (https://NAME.vault.azure.net), authenticating with cred (a managed identity in Azure).
// opts may be nil.
func NewKeyVault(vaultURL, secretName string, cred azcore.TokenCredential, opts *azsecrets.ClientOptions) (*KeyVault, error) {
	u, err := url.Parse(vaultURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("key vault URL %q: want https://NAME.vault.azure.net", vaultURL)
	}
	if secretName == "" {
		return nil, errors.New("key vault: empty secret name")
	}
	c, err := azsecrets.NewClient(vaultURL, cred, opts)
	if err != nil {
		return nil, fmt.Errorf("key vault %s: %w", u.Host, err)
	}
	return &KeyVault{client: c, vault: u.Host, name: secretName}, nil
}

// Get implements Source: it reads the latest version of the secret. A missing secret gives an
// error matching errors.Is(err, fs.ErrNotExist).
func (k *KeyVault) Get(ctx context.Context) ([]byte, error) {
	resp, err := k.client.GetSecret(ctx, k.name, "", nil)
	if err != nil {
		return nil, k.wrap("get", err)
	}
	if resp.Value == nil {
		return nil, fmt.Errorf("key vault %s secret %s: no value", k.vault, k.name)
	}
	return []byte(*resp.Value), nil
}

// Describe implements Source.
func (k *KeyVault) Describe() string { return "key vault " + k.vault + " secret " + k.name }

// Put implements Writer: it sets a new version of the secret.
func (k *KeyVault) Put(ctx context.Context, value []byte) error {
	v := string(value)
	ct := "application/json"
	if len(value) == 0 || value[0] != '{' {
		ct = "text/plain"
	}
	_, err := k.client.SetSecret(ctx, k.name, azsecrets.SetSecretParameters{Value: &v, ContentType: &ct}, nil)
	if err != nil {
		return k.wrap("set", err)
	}
	return nil
}

func (k *KeyVault) wrap(op string, err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		if re.StatusCode == http.StatusNotFound {
			return fmt.Errorf("key vault %s secret %s: %w", k.vault, k.name, fs.ErrNotExist)
		}
		// ErrorCode and status only: the full error text is long and may echo request details.
		return fmt.Errorf("key vault %s: %s secret %s: %d %s", k.vault, op, k.name, re.StatusCode, re.ErrorCode)
	}
	return fmt.Errorf("key vault %s: %s secret %s: %w", k.vault, op, k.name, err)
}

// EnsureLocalRing creates a session-key ring file with one fresh active key at path when the
// file is missing (directory mode 0700, file mode 0600), and reports whether it created one.
// Creation is atomic and exclusive: of two processes racing, one creates the file and both
// then read the same ring. An existing file is left alone (the Keeper validates it).
func EnsureLocalRing(path string) (created bool, err error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("session key ring %s: %w", path, err)
	}
	doc, err := NewRingDocument(time.Now())
	if err != nil {
		return false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("session key ring %s: %w", path, err)
	}
	tf, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		return false, fmt.Errorf("session key ring %s: %w", path, err)
	}
	tmp := tf.Name()
	_ = tf.Close()
	defer os.Remove(tmp)
	if err := NewFile(tmp).Put(context.Background(), doc); err != nil {
		return false, fmt.Errorf("session key ring %s: %w", path, err)
	}
	// link(2) fails if path exists: create-if-absent without a window for a partial file.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("session key ring %s: %w", path, err)
	}
	return true, nil
}

// NewRingDocument returns a new ring document with one active key (for `mcpgate secrets
// generate` and EnsureLocalRing).
func NewRingDocument(now time.Time) ([]byte, error) {
	k, err := session.NewKey(session.StateActive, now)
	if err != nil {
		return nil, err
	}
	r, err := session.NewRing(k)
	if err != nil {
		return nil, err
	}
	return r.Marshal()
}
