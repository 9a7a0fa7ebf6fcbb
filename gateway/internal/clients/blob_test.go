package clients

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"testing"
)

// azuriteEnv names the variable through which e2e/clients_blob_test.go hands a running
// Azurite (connection string) to these tests; the e2e module owns Node processes.
const azuriteEnv = "MCPGATE_TEST_AZURITE_CONNECTION_STRING"

func TestBlobBackendAzurite(t *testing.T) {
	conn := os.Getenv(azuriteEnv)
	if conn == "" {
		t.Skip("needs Azurite: run from e2e (go test ./e2e -run TestClientsBlob)")
	}
	ctx := context.Background()
	b, err := NewBlobBackendFromConnectionString(ctx, conn, "registrations")
	if err != nil {
		t.Fatal(err)
	}
	// Creating the backend again (container exists) is fine.
	if _, err := NewBlobBackendFromConnectionString(ctx, conn, "registrations"); err != nil {
		t.Fatalf("second open: %v", err)
	}
	if _, err := b.Load(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load(missing) = %v", err)
	}
	if _, err := b.Load(ctx, "../x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load(../x) = %v", err)
	}
	if err := b.Save(ctx, "abc", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(ctx, "abc", []byte(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	if doc, err := b.Load(ctx, "abc"); err != nil || string(doc) != `{"v":2}` {
		t.Fatalf("Load = %s, %v", doc, err)
	}
	if err := b.Delete(ctx, "abc"); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "abc"); err != nil {
		t.Fatalf("second delete: %v", err)
	}

	// The registry over the blob backend: register, reopen with an empty cache, find it,
	// authenticate, list, sweep.
	reg := func() *Registry {
		r, err := NewRegistry(ctx, Options{Backend: b, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	resp, err := reg().Register(ctx, []byte(`{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"Blob"}`))
	if err != nil {
		t.Fatal(err)
	}
	r2 := reg()
	c, err := r2.Get(ctx, resp.ClientID)
	if err != nil || c.Name != "Blob" {
		t.Fatalf("Get after reopen = %+v, %v", c, err)
	}
	if _, err := r2.Authenticate(ctx, resp.ClientID, resp.ClientSecret, AuthClientSecretBasic); err != nil {
		t.Errorf("Authenticate: %v", err)
	}
	ids, err := b.List(ctx)
	if err != nil || !slices.Contains(ids, resp.ClientID) {
		t.Fatalf("List = %v, %v", ids, err)
	}
	if n, err := r2.Sweep(ctx, 0); err != nil || n != 0 {
		t.Errorf("Sweep of a fresh registration = %d, %v", n, err)
	}
	if n, err := r2.Sweep(ctx, -1); err != nil || n != 0 {
		t.Errorf("Sweep default = %d, %v", n, err)
	}
}
