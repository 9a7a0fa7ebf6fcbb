// Package storage keeps snippets: one shared namespace of named texts, stored either in Azure
// Blob Storage (container "snippets", blob "{name}.json", raw text) or in a local directory
// ("{dir}/{name}.json"). Every backend validates names itself, so no caller can reach a path
// or blob outside the namespace, and every write is atomic: a concurrent read sees the old or
// the new snippet, never a mix.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// MaxNameLen is the longest snippet name accepted.
const MaxNameLen = 128

// MaxSnippetBytes is the largest snippet accepted (1 MiB).
const MaxSnippetBytes = 1 << 20

// Errors every backend reports (wrapped; test with errors.Is).
var (
	// ErrNotFound means no snippet has that name.
	ErrNotFound = errors.New("snippet not found")
	// ErrInvalidName means the name breaks the naming rules (see ValidateName).
	ErrInvalidName = errors.New("invalid snippet name")
	// ErrTooLarge means the snippet is larger than MaxSnippetBytes.
	ErrTooLarge = errors.New("snippet too large")
)

// Store is a snippet store. Implementations are safe for concurrent use.
type Store interface {
	// Get returns the snippet's content, or an error wrapping ErrNotFound.
	Get(ctx context.Context, name string) ([]byte, error)
	// Put creates or replaces the snippet atomically.
	Put(ctx context.Context, name string, content []byte) error
	// Delete removes the snippet, or returns an error wrapping ErrNotFound.
	Delete(ctx context.Context, name string) error
	// List returns every snippet name in ascending byte order.
	List(ctx context.Context) ([]string, error)
}

// ValidateName reports whether name is a valid snippet name: 1 to MaxNameLen characters of
// [A-Za-z0-9._-], not starting with a dot. The error wraps ErrInvalidName and says what is
// wrong without echoing the name.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the name is empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: the name is longer than %d characters", ErrInvalidName, MaxNameLen)
	case name[0] == '.':
		return fmt.Errorf("%w: the name must not start with a dot", ErrInvalidName)
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return fmt.Errorf("%w: character %d is not one of A-Z a-z 0-9 . _ -", ErrInvalidName, i+1)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// suffix is appended to a snippet name to form its file or blob name (as in the sample).
const suffix = ".json"

func checkPut(name string, content []byte) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if len(content) > MaxSnippetBytes {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(content), MaxSnippetBytes)
	}
	return nil
}

// readSnippet reads a stored snippet, refusing one larger than MaxSnippetBytes (written
// behind our back) without reading it whole.
func readSnippet(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSnippetBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read snippet: %w", err)
	}
	if len(data) > MaxSnippetBytes {
		return nil, fmt.Errorf("%w: stored snippet exceeds %d bytes", ErrTooLarge, MaxSnippetBytes)
	}
	return data, nil
}
