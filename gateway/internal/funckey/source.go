// Package funckey provides the Azure Functions function key (`x-functions-key`) that the
// gateway adds to every backend request. A key comes from one of three sources — a static
// value, a one-line file re-read when it changes, or a Key Vault secret — behind Keys, which
// caches the current key for the hot path, refreshes it periodically and on demand (after a
// backend 401) single-flight with a minimum interval, and fails closed only if no key has ever
// loaded. A key is a secret: nothing here logs it; Fingerprint identifies it instead.
package funckey

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// ErrNoKey means the source holds no usable key (empty value or file).
var ErrNoKey = errors.New("funckey: no function key")

// maxKeyBytes bounds what a source may return; Azure function keys are 56 characters.
const maxKeyBytes = 4096

// Source loads the current function key. Implementations must be safe for concurrent use.
type Source interface {
	// Load returns the current key (trimmed, non-empty) or an error.
	Load(ctx context.Context) (string, error)
	// Describe names the source for logs without revealing the key.
	Describe() string
}

// intervaler is implemented by this package's sources to suggest a poll interval.
type intervaler interface {
	pollInterval() time.Duration
}

// Static returns a source that always yields value (trimmed).
func Static(value string) Source { return staticSource{value: strings.TrimSpace(value)} }

type staticSource struct{ value string }

func (s staticSource) Load(context.Context) (string, error) {
	if s.value == "" {
		return "", ErrNoKey
	}
	if err := validKey(s.value); err != nil {
		return "", err
	}
	return s.value, nil
}

func (staticSource) Describe() string            { return "static value" }
func (staticSource) pollInterval() time.Duration { return 0 }

// File returns a source reading a one-line key file. A poll re-reads the file only when it
// was replaced or its modification time or size changed; an on-demand refresh (after a backend
// 401) always re-reads it, since a same-length key written within the file system's timestamp
// granularity leaves both unchanged. The first line, trimmed, is the key.
func File(path string) Source { return &fileSource{path: path} }

type fileSource struct {
	path string

	mu    sync.Mutex
	info  os.FileInfo
	value string
}

// freshLoader is implemented by sources that cache: LoadFresh bypasses the cache.
type freshLoader interface {
	LoadFresh(ctx context.Context) (string, error)
}

func (f *fileSource) Load(ctx context.Context) (string, error) { return f.load(false) }

// LoadFresh re-reads the file whatever its metadata says.
func (f *fileSource) LoadFresh(ctx context.Context) (string, error) { return f.load(true) }

func (f *fileSource) load(fresh bool) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.path)
	if err != nil {
		return "", fmt.Errorf("funckey: stat key file: %w", err)
	}
	if !fresh && f.value != "" && os.SameFile(st, f.info) && st.ModTime().Equal(f.info.ModTime()) && st.Size() == f.info.Size() {
		return f.value, nil
	}
	if st.Size() > maxKeyBytes {
		return "", fmt.Errorf("funckey: key file %s is larger than %d bytes", f.path, maxKeyBytes)
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return "", fmt.Errorf("funckey: read key file: %w", err)
	}
	v, err := parseKey(b)
	if err != nil {
		return "", fmt.Errorf("funckey: key file %s: %w", f.path, err)
	}
	f.info, f.value = st, v
	return v, nil
}

func (f *fileSource) Describe() string          { return "file " + f.path }
func (*fileSource) pollInterval() time.Duration { return 2 * time.Second }

// SecretGetter is the secret source a Key Vault key is read from (secretsrc.Source satisfies it).
type SecretGetter interface {
	Get(ctx context.Context) ([]byte, error)
	Describe() string
}

// KeyVault returns a source that reads the key from a secret (a Key Vault secret through
// secretsrc). Every Load asks the vault, so Keys polls it slowly and refreshes it on demand.
func KeyVault(secret SecretGetter) Source { return vaultSource{secret: secret} }

type vaultSource struct{ secret SecretGetter }

func (v vaultSource) Load(ctx context.Context) (string, error) {
	b, err := v.secret.Get(ctx)
	if err != nil {
		return "", fmt.Errorf("funckey: read %s: %w", v.secret.Describe(), err)
	}
	k, err := parseKey(b)
	if err != nil {
		return "", fmt.Errorf("funckey: %s: %w", v.secret.Describe(), err)
	}
	return k, nil
}

func (v vaultSource) Describe() string          { return v.secret.Describe() }
func (vaultSource) pollInterval() time.Duration { return 5 * time.Minute }

// parseKey takes the first line of b, trimmed, and validates it.
func parseKey(b []byte) (string, error) {
	if len(b) > maxKeyBytes {
		return "", fmt.Errorf("key longer than %d bytes", maxKeyBytes)
	}
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", ErrNoKey
	}
	if err := validKey(v); err != nil {
		return "", err
	}
	return v, nil
}

// validKey refuses values that cannot travel in an HTTP header (which would otherwise fail
// every backend request, or split headers).
func validKey(v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e {
			return errors.New("funckey: key holds characters that are not visible ASCII")
		}
	}
	return nil
}
