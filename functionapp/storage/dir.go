package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Dir stores snippets as files "{name}.json" in one directory. Writes go to a temporary file
// in the same directory that is renamed over the target, so readers never see a torn file.
type Dir struct {
	path string
}

// NewDir returns a Dir store rooted at path, creating the directory (mode 0700) if needed.
func NewDir(path string) (*Dir, error) {
	if path == "" {
		return nil, errors.New("snippet directory: empty path")
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("snippet directory: %w", err)
	}
	return &Dir{path: path}, nil
}

// Path returns the directory the store writes to.
func (d *Dir) Path() string { return d.path }

func (d *Dir) file(name string) string { return filepath.Join(d.path, name+suffix) }

// Get implements Store.
func (d *Dir) Get(_ context.Context, name string) ([]byte, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	f, err := os.Open(d.file(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("read snippet: %w", err)
	}
	defer f.Close()
	return readSnippet(f)
}

// Put implements Store.
func (d *Dir) Put(_ context.Context, name string, content []byte) error {
	if err := checkPut(name, content); err != nil {
		return err
	}
	// The temporary name starts with a dot, which no valid snippet name does, so List and
	// Get never see it.
	tmp, err := os.CreateTemp(d.path, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write snippet: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(content); err != nil {
		tmp.Close()
		return fmt.Errorf("write snippet: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write snippet: %w", err)
	}
	if err := os.Rename(tmp.Name(), d.file(name)); err != nil {
		return fmt.Errorf("write snippet: %w", err)
	}
	return nil
}

// Delete implements Store.
func (d *Dir) Delete(_ context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	err := os.Remove(d.file(name))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err != nil {
		return fmt.Errorf("delete snippet: %w", err)
	}
	return nil
}

// List implements Store.
func (d *Dir) List(_ context.Context) ([]string, error) {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("list snippets: %w", err)
	}
	names := []string{}
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok || !e.Type().IsRegular() || ValidateName(n) != nil {
			continue
		}
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}
