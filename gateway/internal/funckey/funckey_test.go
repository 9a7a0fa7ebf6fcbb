package funckey

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestStatic(t *testing.T) {
	k := New(Static("  abc  \n"), Options{})
	got, err := k.Current(t.Context())
	if err != nil || got != "abc" {
		t.Fatalf("Current = %q, %v", got, err)
	}
	if fp := k.Fingerprint(); fp != Fingerprint("abc") || len(fp) != 8 {
		t.Fatalf("Fingerprint = %q", fp)
	}
	if _, err := New(Static(""), Options{}).Current(t.Context()); !errors.Is(err, ErrNeverLoaded) {
		t.Fatalf("empty static: %v, want ErrNeverLoaded", err)
	}
	if _, err := New(Static("a\x01b"), Options{}).Current(t.Context()); err == nil {
		t.Fatal("control character accepted")
	}
}

func TestFileReloadsOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "function-key")
	write := func(s string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour)
	write("first-key\nignored second line\n", t0)
	k := New(File(path), Options{MinRefreshInterval: time.Nanosecond})
	if got, err := k.Current(t.Context()); err != nil || got != "first-key" {
		t.Fatalf("Current = %q, %v", got, err)
	}
	write("secnd-key\n", t0) // same size and mtime: only an on-demand refresh sees it
	if err := k.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, _ := k.Current(t.Context()); got != "secnd-key" {
		t.Fatalf("on-demand refresh missed a same-size, same-mtime change: %q", got)
	}
	write("second-key\n", t0.Add(time.Second))
	if got, _ := k.Current(t.Context()); got != "secnd-key" {
		t.Fatalf("Current changed without a refresh: %q", got)
	}
	if err := k.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, _ := k.Current(t.Context()); got != "second-key" {
		t.Fatalf("after refresh Current = %q", got)
	}
	// A broken file keeps the previous key (fail closed only if nothing ever loaded).
	write("\n", t0.Add(2*time.Second))
	time.Sleep(time.Millisecond)
	if err := k.Refresh(t.Context()); !errors.Is(err, ErrNoKey) {
		t.Fatalf("Refresh on empty file: %v", err)
	}
	if got, err := k.Current(t.Context()); err != nil || got != "second-key" {
		t.Fatalf("Current after failed refresh = %q, %v", got, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := New(File(path), Options{}).Current(t.Context()); !errors.Is(err, ErrNeverLoaded) {
		t.Fatalf("missing file: %v", err)
	}
}

// countingSource blocks each Load until release is closed and counts loads.
type countingSource struct {
	loads   atomic.Int32
	release chan struct{}
	mu      sync.Mutex
	value   string
	err     error
}

func (c *countingSource) Load(ctx context.Context) (string, error) {
	c.loads.Add(1)
	if c.release != nil {
		<-c.release
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.value, c.err
}
func (c *countingSource) Describe() string { return "counting" }
func (c *countingSource) set(v string, err error) {
	c.mu.Lock()
	c.value, c.err = v, err
	c.mu.Unlock()
}

func TestRefreshSingleFlightAndMinInterval(t *testing.T) {
	src := &countingSource{release: make(chan struct{}), value: "k1"}
	reg := prometheus.NewRegistry()
	k := New(src, Options{MinRefreshInterval: time.Hour, Registerer: reg})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if err := k.Refresh(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	for src.loads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(src.release)
	wg.Wait()
	if n := src.loads.Load(); n != 1 {
		t.Fatalf("16 concurrent refreshes read the source %d times, want 1", n)
	}
	src.set("k2", nil)
	skipped := testutil.ToFloat64(k.refreshC.WithLabelValues("demand", "skipped"))
	if err := k.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := src.loads.Load(); n != 1 {
		t.Fatalf("refresh within the minimum interval read the source (%d loads)", n)
	}
	if got, _ := k.Current(t.Context()); got != "k1" {
		t.Fatalf("Current = %q", got)
	}
	if v := testutil.ToFloat64(k.refreshC.WithLabelValues("demand", "skipped")); v != skipped+1 {
		t.Fatalf("skipped counter = %v", v)
	}
	if n, err := testutil.GatherAndCount(reg, "mcpgate_function_key_loaded"); err != nil || n != 1 {
		t.Fatalf("loaded gauge: %d, %v", n, err)
	}
}

func TestNeverLoadedFailsClosedAndRecovers(t *testing.T) {
	src := &countingSource{err: errors.New("vault down")}
	k := New(src, Options{MinRefreshInterval: time.Nanosecond})
	if _, err := k.Current(t.Context()); !errors.Is(err, ErrNeverLoaded) {
		t.Fatalf("Current = %v, want ErrNeverLoaded", err)
	}
	if k.Loaded() || k.Fingerprint() != "" {
		t.Fatal("Loaded/Fingerprint report a key")
	}
	src.set("k", nil)
	time.Sleep(time.Millisecond)
	if got, err := k.Current(t.Context()); err != nil || got != "k" {
		t.Fatalf("Current after recovery = %q, %v", got, err)
	}
	// Once loaded, source failures keep the key.
	src.set("", errors.New("vault down again"))
	if err := k.Refresh(t.Context()); err == nil {
		t.Fatal("Refresh hid the source error")
	}
	if got, err := k.Current(t.Context()); err != nil || got != "k" {
		t.Fatalf("Current = %q, %v", got, err)
	}
}

type fakeSecret struct{ b []byte }

func (f fakeSecret) Get(context.Context) ([]byte, error) { return f.b, nil }
func (fakeSecret) Describe() string                      { return "key vault secret x" }

func TestKeyVaultAndRun(t *testing.T) {
	k := New(KeyVault(fakeSecret{b: []byte("vault-key\n")}), Options{PollInterval: time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	for !k.Loaded() {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if got, _ := k.Current(t.Context()); got != "vault-key" {
		t.Fatalf("Current = %q", got)
	}
	if k.Describe() != "key vault secret x" {
		t.Fatalf("Describe = %q", k.Describe())
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add([]byte("abc\n"))
	f.Add([]byte(" \r\n"))
	f.Add([]byte("a\x00b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseKey(b)
		if err != nil {
			return
		}
		if v == "" || validKey(v) != nil || len(v) > maxKeyBytes {
			t.Fatalf("parseKey accepted %q", v)
		}
	})
}

func TestStartLoadDoesNotDelayDemandRefresh(t *testing.T) {
	src := &countingSource{value: "k1"}
	k := New(src, Options{MinRefreshInterval: time.Hour, PollInterval: -1})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	for !k.Loaded() {
		time.Sleep(time.Millisecond)
	}
	src.set("k2", nil)
	if err := k.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, _ := k.Current(t.Context()); got != "k2" {
		t.Fatalf("the start-up load delayed the first on-demand refresh: %q", got)
	}
	cancel()
	<-done
}
