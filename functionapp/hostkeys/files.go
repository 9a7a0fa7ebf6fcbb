// Package hostkeys emulates the Azure Functions host's function-key check for the standalone
// function app: it reads the host's secrets files (host.json and <function>.json, in the
// host's own format with "encrypted": false), re-reads them when they change, and rejects
// requests exactly as the host does for an authLevel "function" route.
package hostkeys

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Key is one named key in a secrets file.
type Key struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Encrypted bool   `json:"encrypted"`
}

// HostSecrets is the host's host.json secrets document.
type HostSecrets struct {
	MasterKey    *Key   `json:"masterKey,omitempty"`
	FunctionKeys []Key  `json:"functionKeys"`
	SystemKeys   []Key  `json:"systemKeys"`
	HostName     string `json:"hostName,omitempty"`
	InstanceID   string `json:"instanceId,omitempty"`
	Source       string `json:"source,omitempty"`
}

// FunctionSecrets is the host's per-function secrets document (<function>.json).
type FunctionSecrets struct {
	Keys     []Key  `json:"keys"`
	HostName string `json:"hostName,omitempty"`
	Source   string `json:"source,omitempty"`
}

// maxFileBytes bounds a secrets file; real ones are a few hundred bytes.
const maxFileBytes = 1 << 20

// ParseHostSecrets parses a host.json secrets document. Encrypted keys are refused: only
// the Functions host can decrypt them.
func ParseHostSecrets(data []byte) (*HostSecrets, error) {
	if len(data) > maxFileBytes {
		return nil, errors.New("host secrets: file too large")
	}
	var s HostSecrets
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("host secrets: %w", err)
	}
	keys := append(append([]Key{}, s.FunctionKeys...), s.SystemKeys...)
	if s.MasterKey != nil {
		keys = append(keys, *s.MasterKey)
	}
	if err := checkKeys(keys); err != nil {
		return nil, fmt.Errorf("host secrets: %w", err)
	}
	return &s, nil
}

// ParseFunctionSecrets parses a per-function secrets document.
func ParseFunctionSecrets(data []byte) (*FunctionSecrets, error) {
	if len(data) > maxFileBytes {
		return nil, errors.New("function secrets: file too large")
	}
	var s FunctionSecrets
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("function secrets: %w", err)
	}
	if err := checkKeys(s.Keys); err != nil {
		return nil, fmt.Errorf("function secrets: %w", err)
	}
	return &s, nil
}

func checkKeys(keys []Key) error {
	for _, k := range keys {
		if k.Encrypted {
			return fmt.Errorf("key %q is encrypted; local secrets must have \"encrypted\": false", k.Name)
		}
	}
	return nil
}

// NewKey returns a random key in the host's shape: 40 random bytes, URL-safe base64
// with padding (56 characters).
func NewKey() string {
	b := make([]byte, 40)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics on an unusable source)
	return base64.URLEncoding.EncodeToString(b)
}

// DefaultKeyName is the name of the function key EnsureSecrets generates.
const DefaultKeyName = "gateway"

// EnsureSecrets makes sure dir holds key files. When neither host.json nor
// <function>.json exists, it writes host.json with a fresh master key and one function key
// named DefaultKeyName (mode 0600) and returns its path and created=true. It never returns
// a key.
func EnsureSecrets(dir, function string) (path string, created bool, err error) {
	hostPath := filepath.Join(dir, "host.json")
	for _, p := range []string{hostPath, filepath.Join(dir, function+".json")} {
		if _, err := os.Stat(p); err == nil {
			return hostPath, false, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", false, fmt.Errorf("secrets: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", false, fmt.Errorf("secrets: %w", err)
	}
	s := HostSecrets{
		MasterKey:    &Key{Name: "master", Value: NewKey()},
		FunctionKeys: []Key{{Name: DefaultKeyName, Value: NewKey()}},
		SystemKeys:   []Key{},
		Source:       "mcpgate",
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", false, fmt.Errorf("secrets: %w", err)
	}
	if err := writeFileAtomic(hostPath, append(data, '\n')); err != nil {
		return "", false, err
	}
	return hostPath, true, nil
}

// writeFileAtomic writes data to path through a temporary file and a rename, mode 0600,
// refusing to replace a file that appeared meanwhile.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("secrets: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	// Link fails if path exists, so a concurrently created file is never overwritten.
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	return nil
}
