package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
)

// flushCache is a clients.Cache the test can empty, as if every entry had expired.
type flushCache struct{ cur atomic.Pointer[clients.Cache] }

func newFlushCache() *flushCache { c := &flushCache{}; c.flush(); return c }

func (c *flushCache) flush() { m := clients.NewMemoryCache(0); c.cur.Store(&m) }

func (c *flushCache) Get(ctx context.Context, k string) ([]byte, error) {
	return (*c.cur.Load()).Get(ctx, k)
}

func (c *flushCache) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	return (*c.cur.Load()).Set(ctx, k, v, ttl)
}

func (c *flushCache) Del(ctx context.Context, k string) error { return (*c.cur.Load()).Del(ctx, k) }

// startDocServer serves a Client ID Metadata Document at the returned URL, or 503 while down.
func startDocServer(t *testing.T, down *atomic.Bool) string {
	t.Helper()
	var docURL string
	doc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down != nil && down.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"client_id": docURL, "client_name": "CIMD Client", "redirect_uris": []string{"http://127.0.0.1:3000/callback"},
			"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"},
		})
	}))
	t.Cleanup(doc.Close)
	docURL = doc.URL + "/client.json"
	return docURL
}

// TestMetadataDocumentHostOutage: while a metadata-document client's document host is down
// and no copy is cached, its refresh is 503 temporarily_unavailable (the client keeps its
// tokens and retries), not 401 invalid_client (on which MCP clients drop their registration
// and tokens); the first refresh after the outage works.
func TestMetadataDocumentHostOutage(t *testing.T) {
	var down atomic.Bool
	docURL := startDocServer(t, &down)
	cache := newFlushCache()
	e := newEnv(t, func(_ *Config, o *clients.Options) { o.AllowLoopbackMetadata = true; o.Cache = cache })
	c := testClient{ID: docURL, Redirect: "http://127.0.0.1:3000/callback"}
	v, ch := pkce()
	res := e.authorize(t, newBrowser(e.h), c, ch, nil)
	tresp, m := e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {res.Redirect.Query().Get("code")}, "redirect_uri": {c.Redirect}, "client_id": {c.ID}, "code_verifier": {v}})
	wantStatus(t, tresp, 200)

	down.Store(true)
	cache.flush()
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)}, "client_id": {c.ID}}
	resp, m2 := e.token(t, refresh)
	wantOAuthError(t, resp, m2, http.StatusServiceUnavailable, "temporarily_unavailable")

	down.Store(false)
	resp, m3 := e.token(t, refresh)
	wantStatus(t, resp, 200)
	if m3["access_token"] == nil {
		t.Fatalf("refresh after the outage: %v", m3)
	}
}
