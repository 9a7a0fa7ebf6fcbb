// Package storagetest is the behaviour table every storage.Store backend must pass. The
// functionapp module runs it against the directory backend; the e2e module runs it against
// Azurite.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/functionapp/storage"
)

// Run runs the table. newStore must return an empty store, a fresh one per call.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	ctx := context.Background()

	t.Run("EmptyList", func(t *testing.T) {
		s := newStore(t)
		names, err := s.List(ctx)
		if err != nil || len(names) != 0 {
			t.Fatalf("List on an empty store = %v, %v; want [], nil", names, err)
		}
	})

	t.Run("RoundTrip", func(t *testing.T) {
		s := newStore(t)
		content := []byte("fmt.Println(\"héllo\")\n\x00{\"not\":\"json\"}")
		if err := s.Put(ctx, "hello.go", content); err != nil {
			t.Fatalf("Put: %v", err)
		}
		got, err := s.Get(ctx, "hello.go")
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("Get = %q, %v; want %q", got, err, content)
		}
		if err := s.Put(ctx, "hello.go", []byte("v2")); err != nil {
			t.Fatalf("overwrite: %v", err)
		}
		if got, _ := s.Get(ctx, "hello.go"); string(got) != "v2" {
			t.Fatalf("after overwrite Get = %q, want v2", got)
		}
	})

	t.Run("EmptyContent", func(t *testing.T) {
		s := newStore(t)
		if err := s.Put(ctx, "empty", nil); err != nil {
			t.Fatalf("Put empty: %v", err)
		}
		got, err := s.Get(ctx, "empty")
		if err != nil || len(got) != 0 {
			t.Fatalf("Get empty = %q, %v", got, err)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Get(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get missing: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Delete missing: %v, want ErrNotFound", err)
		}
	})

	t.Run("ListSortedAndDelete", func(t *testing.T) {
		s := newStore(t)
		in := []string{"b", "A", "a.b", "_x", "z-1", "0", "a"}
		for _, n := range in {
			if err := s.Put(ctx, n, []byte(n)); err != nil {
				t.Fatalf("Put %q: %v", n, err)
			}
		}
		want := slices.Clone(in)
		slices.Sort(want)
		got, err := s.List(ctx)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("List = %v, %v; want %v", got, err, want)
		}
		if err := s.Delete(ctx, "a.b"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := s.Get(ctx, "a.b"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
		}
		got, _ = s.List(ctx)
		if slices.Contains(got, "a.b") || len(got) != len(want)-1 {
			t.Fatalf("List after Delete = %v", got)
		}
	})

	t.Run("InvalidNames", func(t *testing.T) {
		s := newStore(t)
		bad := []string{"", ".", "..", ".hidden", "../x", "a/b", `a\b`, "a b", "a%2fb", "é", "a\x00",
			strings.Repeat("x", storage.MaxNameLen+1), "a:b", "a?b", "a#b"}
		for _, n := range bad {
			if err := s.Put(ctx, n, []byte("x")); !errors.Is(err, storage.ErrInvalidName) {
				t.Errorf("Put(%q) = %v, want ErrInvalidName", n, err)
			}
			if _, err := s.Get(ctx, n); !errors.Is(err, storage.ErrInvalidName) {
				t.Errorf("Get(%q) = %v, want ErrInvalidName", n, err)
			}
			if err := s.Delete(ctx, n); !errors.Is(err, storage.ErrInvalidName) {
				t.Errorf("Delete(%q) = %v, want ErrInvalidName", n, err)
			}
		}
		if names, _ := s.List(ctx); len(names) != 0 {
			t.Fatalf("invalid names reached storage: %v", names)
		}
		long := strings.Repeat("x", storage.MaxNameLen)
		if err := s.Put(ctx, long, []byte("x")); err != nil {
			t.Fatalf("Put of a %d-character name: %v", storage.MaxNameLen, err)
		}
	})

	t.Run("SizeLimit", func(t *testing.T) {
		s := newStore(t)
		max := bytes.Repeat([]byte("a"), storage.MaxSnippetBytes)
		if err := s.Put(ctx, "max", max); err != nil {
			t.Fatalf("Put of exactly the limit: %v", err)
		}
		if got, err := s.Get(ctx, "max"); err != nil || len(got) != storage.MaxSnippetBytes {
			t.Fatalf("Get max: %d bytes, %v", len(got), err)
		}
		if err := s.Put(ctx, "big", append(max, 'b')); !errors.Is(err, storage.ErrTooLarge) {
			t.Fatalf("Put over the limit: %v, want ErrTooLarge", err)
		}
		if _, err := s.Get(ctx, "big"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("a refused snippet was stored: %v", err)
		}
	})

	t.Run("ConcurrentSaveAndReadNeverTears", func(t *testing.T) {
		s := newStore(t)
		// Two versions of equal length that differ in every byte: a torn read mixes them.
		const size = 256 << 10
		va := bytes.Repeat([]byte("A"), size)
		vb := bytes.Repeat([]byte("B"), size)
		if err := s.Put(ctx, "race", va); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for w := range 2 {
			wg.Go(func() {
				for i := range 10 {
					v := va
					if (i+w)%2 == 1 {
						v = vb
					}
					if err := s.Put(ctx, "race", v); err != nil {
						errs <- fmt.Errorf("put: %w", err)
						return
					}
				}
			})
		}
		for range 2 {
			wg.Go(func() {
				for range 20 {
					got, err := s.Get(ctx, "race")
					if err != nil {
						errs <- fmt.Errorf("get: %w", err)
						return
					}
					if !bytes.Equal(got, va) && !bytes.Equal(got, vb) {
						errs <- fmt.Errorf("torn read: %d bytes, first %q last %q", len(got), got[:1], got[len(got)-1:])
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if names, _ := s.List(ctx); !slices.Equal(names, []string{"race"}) {
			t.Fatalf("List after concurrent writes = %v (temporary files leaked?)", names)
		}
	})
}
