// Package secretsrc reads (and writes) secrets from where they live: a local file or an Azure
// Key Vault secret. Sources never log or describe secret values.
package secretsrc

import (
	"context"
	"errors"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
)

// Source yields the current value of one secret.
type Source interface {
	// Get returns the secret's current value.
	Get(ctx context.Context) ([]byte, error)
	// Describe names the source for logs (never the value).
	Describe() string
}

// Writer stores a new value of a secret.
type Writer interface {
	// Put replaces the secret's value.
	Put(ctx context.Context, value []byte) error
}

// File is a secret kept in a local file.
type File struct{ path string }

// NewFile returns a source reading the whole file at path. A missing file gives an error
// matching errors.Is(err, fs.ErrNotExist).
func NewFile(path string) *File { return &File{path: path} }

// Get implements Source.
func (f *File) Get(ctx context.Context) ([]byte, error) { return nil, errors.New("todo") }

// Describe implements Source.
func (f *File) Describe() string { return "file " + f.path }

// Put implements Writer.
func (f *File) Put(ctx context.Context, value []byte) error { return errors.New("todo") }

// KeyVault is a secret in Azure Key Vault (latest version).
type KeyVault struct {
	client *azsecrets.Client
	vault  string
	name   string
}

// NewKeyVault returns a source for secret secretName in the vault at vaultURL.
func NewKeyVault(vaultURL, secretName string, cred azcore.TokenCredential, opts *azsecrets.ClientOptions) (*KeyVault, error) {
	return nil, errors.New("todo")
}

// Get implements Source.
func (k *KeyVault) Get(ctx context.Context) ([]byte, error) { return nil, errors.New("todo") }

// Describe implements Source.
func (k *KeyVault) Describe() string { return "key vault " + k.vault + " secret " + k.name }

// Put implements Writer.
func (k *KeyVault) Put(ctx context.Context, value []byte) error { return errors.New("todo") }

// EnsureLocalRing creates a session-key ring file with one active key at path when it is
// missing, and reports whether it created one.
func EnsureLocalRing(path string) (created bool, err error) { return false, errors.New("todo") }
