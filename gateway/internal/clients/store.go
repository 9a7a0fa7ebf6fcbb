package clients

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Backend is the durable store of dynamic registrations: one JSON document per client id.
// Load returns an error wrapping ErrNotFound when the id is unknown.
type Backend interface {
	Load(ctx context.Context, id string) ([]byte, error)
	Save(ctx context.Context, id string, doc []byte) error
	Delete(ctx context.Context, id string) error
	List(ctx context.Context) ([]string, error)
}

// Cache is the shared cache in front of the backend and of fetched metadata documents (Redis
// in production, memory locally). Get returns an error wrapping ErrNotFound on a miss.
type Cache interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, v []byte, ttl time.Duration) error
	Del(ctx context.Context, key string) error
}

// storeIDPattern limits ids that reach a backend to safe file and blob names.
var storeIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// DirBackend stores one JSON file per client in a directory (default .mcpgate/clients).
type DirBackend struct {
	dir string
}

// NewDirBackend creates dir (0700) if needed and returns a backend storing files in it.
func NewDirBackend(dir string) (*DirBackend, error) {
	if dir == "" {
		return nil, errors.New("clients: directory backend needs a directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("clients: create %s: %w", dir, err)
	}
	return &DirBackend{dir: dir}, nil
}

func (b *DirBackend) path(id string) (string, error) {
	if !storeIDPattern.MatchString(id) {
		return "", fmt.Errorf("clients: invalid client id for storage: %w", ErrNotFound)
	}
	return filepath.Join(b.dir, id+".json"), nil
}

// Load reads the client's document.
func (b *DirBackend) Load(_ context.Context, id string) ([]byte, error) {
	p, err := b.path(id)
	if err != nil {
		return nil, err
	}
	doc, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("clients: load %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("clients: load %s: %w", id, err)
	}
	return doc, nil
}

// Save writes the document atomically (temporary file, fsync, rename).
func (b *DirBackend) Save(_ context.Context, id string, doc []byte) error {
	p, err := b.path(id)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(b.dir, ".tmp-"+id+"-*")
	if err != nil {
		return fmt.Errorf("clients: save %s: %w", id, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(doc); err != nil {
		f.Close()
		return fmt.Errorf("clients: save %s: %w", id, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("clients: save %s: %w", id, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("clients: save %s: %w", id, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("clients: save %s: %w", id, err)
	}
	return nil
}

// Delete removes the document; deleting an unknown id is not an error.
func (b *DirBackend) Delete(_ context.Context, id string) error {
	p, err := b.path(id)
	if err != nil {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("clients: delete %s: %w", id, err)
	}
	return nil
}

// List returns every stored client id.
func (b *DirBackend) List(_ context.Context) ([]string, error) {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, fmt.Errorf("clients: list %s: %w", b.dir, err)
	}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || e.IsDir() || !storeIDPattern.MatchString(id) {
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// memoryCache is the default Cache: a bounded in-process map with expiry.
type memoryCache struct {
	mu      sync.Mutex
	entries map[string]memoryEntry
	max     int
	now     func() time.Time
}

type memoryEntry struct {
	v   []byte
	exp time.Time
}

// NewMemoryCache returns an in-process Cache holding at most maxEntries entries.
func NewMemoryCache(maxEntries int) Cache {
	if maxEntries <= 0 {
		maxEntries = 10000
	}
	return &memoryCache{entries: map[string]memoryEntry{}, max: maxEntries, now: time.Now}
}

func (m *memoryCache) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	if !ok || !m.now().Before(e.exp) {
		delete(m.entries, key)
		return nil, ErrNotFound
	}
	return e.v, nil
}

func (m *memoryCache) Set(_ context.Context, key string, v []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if len(m.entries) >= m.max {
		for k, e := range m.entries {
			if !now.Before(e.exp) {
				delete(m.entries, k)
			}
		}
		for k := range m.entries {
			if len(m.entries) < m.max {
				break
			}
			delete(m.entries, k)
		}
	}
	m.entries[key] = memoryEntry{v: append([]byte(nil), v...), exp: now.Add(ttl)}
	return nil
}

func (m *memoryCache) Del(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, key)
	return nil
}
