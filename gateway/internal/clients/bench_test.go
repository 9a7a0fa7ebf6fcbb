package clients

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

func BenchmarkRedirectAllowedLoopback(b *testing.B) {
	c := &Client{RedirectURIs: []string{"https://a.example/cb", "http://127.0.0.1:3000/callback"}}
	for b.Loop() {
		if !c.RedirectAllowed("http://127.0.0.1:51234/callback") {
			b.Fatal("not allowed")
		}
	}
}

func BenchmarkGetDynamicCached(b *testing.B) {
	ctx := context.Background()
	backend, err := NewDirBackend(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	r, err := NewRegistry(ctx, Options{Backend: backend, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	resp, err := r.Register(ctx, []byte(`{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := r.Get(ctx, resp.ClientID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseMetadata(b *testing.B) {
	body := []byte(`{"application_type":"native","client_name":"MCP CLI Client","grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none","redirect_uris":["http://localhost:5678/oauth/callback"],"scope":"mcp:tools"}`)
	for b.Loop() {
		if _, err := ParseMetadata(body); err != nil {
			b.Fatal(err)
		}
	}
}

// cancelOnDelete ends the sweeper's context once it has deleted something.
type cancelOnDelete struct {
	Backend
	cancel context.CancelFunc
}

func (c cancelOnDelete) Delete(ctx context.Context, id string) error {
	defer c.cancel()
	return c.Backend.Delete(ctx, id)
}

func TestSweepEveryStopsWithContext(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir, err := NewDirBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := NewRegistry(ctx, Options{Backend: cancelOnDelete{dir, cancel}, Now: clock.now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := r.Register(context.Background(), []byte(`{"redirect_uris":["https://a.example/cb"]}`))
	if err != nil {
		t.Fatal(err)
	}
	clock.t = clock.t.Add(31 * 24 * time.Hour)
	r.SweepEvery(ctx, time.Hour, 0) // sweeps at once; the delete cancels ctx, so it returns
	if _, err := r.Get(context.Background(), resp.ClientID); err == nil {
		t.Error("SweepEvery did not sweep")
	}
}
