package clients

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPublicAddr(t *testing.T) {
	tests := map[string]bool{
		"93.184.216.34": true, "8.8.8.8": true, "2606:4700::1111": true, "2a00:1450:4001::200e": true,
		"127.0.0.1": false, "127.8.9.1": false, "::1": false, "10.0.0.1": false, "172.16.5.4": false,
		"192.168.1.1": false, "169.254.169.254": false, "fe80::1": false, "fc00::1": false, "fd12::1": false,
		"0.0.0.0": false, "::": false, "224.0.0.1": false, "ff02::1": false, "255.255.255.255": false,
		"100.64.0.1": false, "198.18.0.1": false, "192.0.2.1": false, "240.0.0.1": false,
		"::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false, "::ffff:8.8.8.8": true,
		"64:ff9b::a00:1": false, "64:ff9b::808:808": true, "2002:a00:1::1": false, "2002:808:808::1": true,
		"::127.0.0.1": false, "2001:db8::1": false, "fec0::1": false,
	}
	for s, want := range tests {
		if got := PublicAddr(netip.MustParseAddr(s)); got != want {
			t.Errorf("PublicAddr(%s) = %v, want %v", s, got, want)
		}
	}
	if PublicAddr(netip.Addr{}) || PublicAddr(netip.MustParseAddr("fe80::1%eth0")) {
		t.Error("invalid or zoned address accepted")
	}
}

// metadataServer serves a Client ID Metadata Document and counts requests.
type metadataServer struct {
	srv   *httptest.Server
	hits  atomic.Int32
	serve func(w http.ResponseWriter, r *http.Request, self string)
}

func newMetadataServer(t *testing.T, tls bool, serve func(w http.ResponseWriter, r *http.Request, self string)) *metadataServer {
	t.Helper()
	m := &metadataServer{serve: serve}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.hits.Add(1)
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		m.serve(w, r, scheme+"://"+r.Host+r.URL.RequestURI())
	})
	if tls {
		m.srv = httptest.NewTLSServer(h)
	} else {
		m.srv = httptest.NewServer(h)
	}
	t.Cleanup(m.srv.Close)
	return m
}

func validDoc(w http.ResponseWriter, self string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=600")
	fmt.Fprintf(w, `{"client_id":%q,"client_name":"Doc Client","redirect_uris":["http://127.0.0.1/callback","https://doc.example/cb"],"token_endpoint_auth_method":"none"}`, self)
}

func cimdRegistry(t *testing.T, opts Options) *Registry {
	t.Helper()
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.MetadataTimeout = 2 * time.Second
	return newTestRegistry(t, t.TempDir(), nil, opts)
}

func TestMetadataDocumentFetchOnLoopback(t *testing.T) {
	ctx := context.Background()
	m := newMetadataServer(t, true, func(w http.ResponseWriter, r *http.Request, self string) { validDoc(w, self) })
	pool := m.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	port := m.srv.Listener.Addr().(*net.TCPAddr).Port

	// Through a host name (TLS verified against it): the resolver says example.com is 127.0.0.1.
	r := cimdRegistry(t, Options{AllowLoopbackMetadata: true, MetadataRootCAs: pool,
		Resolver: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}})
	id := fmt.Sprintf("https://example.com:%d/clients/doc.json", port)
	c, err := r.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if c.ID != id || c.Kind != KindMetadataDocument || c.Name != "Doc Client" || !c.Public() || c.ApplicationType != "web" ||
		!c.RedirectAllowed("http://127.0.0.1:4444/callback") || !c.AllowsGrant(GrantRefreshToken) {
		t.Errorf("client = %+v", c)
	}
	// Cached: a second Get does not fetch again.
	if _, err := r.Get(ctx, id); err != nil || m.hits.Load() != 1 {
		t.Errorf("second Get: %v, hits %d", err, m.hits.Load())
	}
	if _, err := r.Authenticate(ctx, id, "", AuthNone); err != nil {
		t.Errorf("Authenticate(document client): %v", err)
	}

	// The same server is refused without the test switch: loopback is never fetched.
	m.hits.Store(0)
	strict := cimdRegistry(t, Options{MetadataRootCAs: pool,
		Resolver: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}})
	if _, err := strict.Get(ctx, id); !errors.Is(err, ErrMetadataDocument) {
		t.Errorf("loopback without switch: %v", err)
	}
	if _, err := strict.Get(ctx, fmt.Sprintf("https://127.0.0.1:%d/doc.json", port)); !errors.Is(err, ErrMetadataDocument) {
		t.Errorf("loopback IP literal without switch: %v", err)
	}
	if m.hits.Load() != 0 {
		t.Errorf("refused fetch reached the server %d times", m.hits.Load())
	}
}

func TestMetadataDocumentSSRFRefused(t *testing.T) {
	answers := map[string][]string{
		"loopback.test":       {"127.0.0.1"},
		"private.test":        {"10.1.2.3"},
		"metadata.test":       {"169.254.169.254"},
		"mapped.test":         {"::ffff:127.0.0.1"},
		"mapped-private.test": {"::ffff:192.168.0.1"},
		"v6loop.test":         {"::1"},
		"linklocal6.test":     {"fe80::1"},
		"ula.test":            {"fd00::1"},
		"nat64.test":          {"64:ff9b::7f00:1"},
		"unspecified.test":    {"0.0.0.0"},
		"multicast.test":      {"239.1.1.1"},
		"mixed.test":          {"93.184.216.34", "10.0.0.1"},
		"cgnat.test":          {"100.100.100.100"},
	}
	var resolved atomic.Int32
	r := cimdRegistry(t, Options{Resolver: func(_ context.Context, host string) ([]netip.Addr, error) {
		resolved.Add(1)
		var out []netip.Addr
		for _, s := range answers[host] {
			out = append(out, netip.MustParseAddr(s))
		}
		if out == nil {
			return nil, errors.New("no such host")
		}
		return out, nil
	}})
	for host := range answers {
		_, err := r.Get(context.Background(), "https://"+host+"/client.json")
		if !errors.Is(err, ErrMetadataDocument) || !strings.Contains(err.Error(), "refused address") {
			t.Errorf("%s: %v, want a refused address", host, err)
		}
	}
	if resolved.Load() != int32(len(answers)) {
		t.Errorf("resolver called %d times, want %d", resolved.Load(), len(answers))
	}
	// IP literals never reach the resolver and are refused the same way.
	for _, lit := range []string{"127.0.0.1", "[::1]", "10.0.0.1", "169.254.169.254", "[::ffff:7f00:1]", "[fe80::1]", "0.0.0.0"} {
		if _, err := r.Get(context.Background(), "https://"+lit+"/client.json"); !errors.Is(err, ErrMetadataDocument) {
			t.Errorf("literal %s: %v", lit, err)
		}
	}
}

func TestMetadataDocumentInvalid(t *testing.T) {
	ctx := context.Background()
	big := strings.Repeat(" ", DefaultMetadataMaxBytes)
	cases := map[string]func(w http.ResponseWriter, r *http.Request, self string){
		"redirect": func(w http.ResponseWriter, r *http.Request, self string) {
			http.Redirect(w, r, "/other.json", http.StatusFound)
		},
		"status404": func(w http.ResponseWriter, r *http.Request, self string) { http.NotFound(w, r) },
		"text": func(w http.ResponseWriter, r *http.Request, self string) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["https://a.example/cb"]}`, self)
		},
		"too-large": func(w http.ResponseWriter, r *http.Request, self string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["https://a.example/cb"]}%s`, self, big)
		},
		"id-mismatch": func(w http.ResponseWriter, r *http.Request, self string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"client_id":"https://other.example/c.json","redirect_uris":["https://a.example/cb"]}`)
		},
		"no-redirects": func(w http.ResponseWriter, r *http.Request, self string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"client_id":%q}`, self)
		},
		"bad-redirect": func(w http.ResponseWriter, r *http.Request, self string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["javascript:alert(1)"]}`, self)
		},
		"secret": func(w http.ResponseWriter, r *http.Request, self string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"client_id":%q,"client_secret":"x","redirect_uris":["https://a.example/cb"]}`, self)
		},
		"secret-auth": func(w http.ResponseWriter, r *http.Request, self string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"client_id":%q,"token_endpoint_auth_method":"client_secret_basic","redirect_uris":["https://a.example/cb"]}`, self)
		},
		"not-json": func(w http.ResponseWriter, r *http.Request, self string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `<html>`)
		},
	}
	for name, serve := range cases {
		t.Run(name, func(t *testing.T) {
			m := newMetadataServer(t, false, serve)
			r := cimdRegistry(t, Options{AllowLoopbackMetadata: true})
			id := m.srv.URL + "/" + name + ".json"
			if _, err := r.Get(ctx, id); !errors.Is(err, ErrMetadataDocument) {
				t.Fatalf("Get = %v, want ErrMetadataDocument", err)
			}
			// The failure is cached briefly: no second fetch.
			_, _ = r.Get(ctx, id)
			if m.hits.Load() != 1 {
				t.Errorf("hits = %d, want 1", m.hits.Load())
			}
		})
	}
}

func TestMetadataDocumentURLRules(t *testing.T) {
	m := newMetadataServer(t, false, func(w http.ResponseWriter, r *http.Request, self string) { validDoc(w, self) })
	loose := cimdRegistry(t, Options{AllowLoopbackMetadata: true})
	strict := cimdRegistry(t, Options{Resolver: func(context.Context, string) ([]netip.Addr, error) {
		return nil, errors.New("resolver must not be reached")
	}})
	u, _ := url.Parse(m.srv.URL)
	// http is allowed only with the test switch.
	if _, err := loose.Get(context.Background(), m.srv.URL+"/c.json"); err != nil {
		t.Errorf("http with switch: %v", err)
	}
	if _, err := loose.Get(context.Background(), "http://doc.example/c.json"); !errors.Is(err, ErrMetadataDocument) {
		t.Errorf("http to a non-loopback host with the switch: %v", err)
	}
	for _, id := range []string{
		m.srv.URL + "/c.json", // http without the switch
		"https://a.example", "https://a.example/", "https://a.example/c.json#f", "https://u@a.example/c.json",
		"https://a.example/x/../c.json", "https://a.example/./c.json", "https://A.example/c.json%zz",
		"https://" + u.Host + "/c json",
	} {
		if _, err := strict.Get(context.Background(), id); !errors.Is(err, ErrMetadataDocument) && !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want refusal", id, err)
		}
	}
}

func TestCacheTTL(t *testing.T) {
	for cc, want := range map[string]time.Duration{
		"":                       DefaultMetadataTTL,
		"max-age=600":            600 * time.Second,
		"public, max-age=5":      MinMetadataTTL,
		"max-age=99999999999999": MaxMetadataTTL,
		"no-store":               MinMetadataTTL,
		"no-cache, max-age=600":  MinMetadataTTL,
		"max-age=-1":             DefaultMetadataTTL,
		"max-age=abc":            DefaultMetadataTTL,
	} {
		if got := cacheTTL(cc); got != want {
			t.Errorf("cacheTTL(%q) = %v, want %v", cc, got, want)
		}
	}
}

func FuzzMetadataDocument(f *testing.F) {
	const id = "https://client.example/meta.json"
	f.Add([]byte(`{"client_id":"` + id + `","redirect_uris":["https://a.example/cb"]}`))
	f.Add([]byte(`{"client_id":"` + id + `","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`))
	f.Add([]byte(`{"client_id":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := parseMetadataDocument(body, id)
		if err != nil {
			return
		}
		if c.ID != id || !c.Public() || len(c.RedirectURIs) == 0 || c.Kind != KindMetadataDocument {
			t.Fatalf("accepted %+v", c)
		}
	})
}

// mapCache is a Cache whose entries the test expires by hand.
type mapCache struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (c *mapCache) Get(_ context.Context, k string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m[k]; ok {
		return v, nil
	}
	return nil, ErrNotFound
}

func (c *mapCache) Set(_ context.Context, k string, v []byte, _ time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[k] = v
	return nil
}

func (c *mapCache) Del(_ context.Context, k string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
	return nil
}

func (c *mapCache) expire(k string) { _ = c.Del(context.Background(), k) }

// TestMetadataDocumentOutage: a document host that is down (5xx, unreachable) is not a
// refusal. The last good copy keeps the client working; without one the lookup fails as
// unavailable (503 upstream of here), never as an unknown client (invalid_client, which makes
// MCP clients drop their registration and tokens), and nothing is negative-cached, so the
// first request after the outage works. A 404 is a refusal and drops the last good copy.
func TestMetadataDocumentOutage(t *testing.T) {
	ctx := context.Background()
	var status atomic.Int32 // 0: serve the document
	m := newMetadataServer(t, false, func(w http.ResponseWriter, r *http.Request, self string) {
		if s := int(status.Load()); s != 0 {
			http.Error(w, "outage", s)
			return
		}
		validDoc(w, self)
	})
	cache := &mapCache{m: map[string][]byte{}}
	r := cimdRegistry(t, Options{AllowLoopbackMetadata: true, Cache: cache})
	id := m.srv.URL + "/doc.json"
	fresh, lastGood := cacheKey("cimd", id), cacheKey("cimd-last-good", id)
	if _, err := r.Get(ctx, id); err != nil {
		t.Fatal(err)
	}

	status.Store(http.StatusServiceUnavailable)
	cache.expire(fresh)
	if c, err := r.Get(ctx, id); err != nil || c.ID != id {
		t.Fatalf("outage with a last good copy: %v", err)
	}
	if _, err := r.Authenticate(ctx, id, "", AuthNone); err != nil {
		t.Fatalf("Authenticate during the outage: %v", err)
	}

	cache.expire(fresh)
	cache.expire(lastGood)
	_, err := r.Get(ctx, id)
	if !errors.Is(err, ErrMetadataUnavailable) || errors.Is(err, ErrMetadataDocument) {
		t.Fatalf("outage without a copy: %v (want ErrMetadataUnavailable only)", err)
	}
	if _, err := r.Authenticate(ctx, id, "", AuthNone); err == nil || errors.Is(err, ErrInvalidClient) {
		t.Fatalf("Authenticate during the outage: %v (must not be invalid_client)", err)
	}
	m.srv.Close() // unreachable: the same
	if _, err := r.Get(ctx, id); !errors.Is(err, ErrMetadataUnavailable) {
		t.Fatalf("host unreachable: %v", err)
	}

	m2 := newMetadataServer(t, false, func(w http.ResponseWriter, r *http.Request, self string) {
		if s := int(status.Load()); s != 0 {
			http.Error(w, "outage", s)
			return
		}
		validDoc(w, self)
	})
	id2 := m2.srv.URL + "/doc.json"
	status.Store(http.StatusBadGateway)
	if _, err := r.Get(ctx, id2); !errors.Is(err, ErrMetadataUnavailable) {
		t.Fatalf("502: %v", err)
	}
	status.Store(0) // back: no negative cache in the way
	if _, err := r.Get(ctx, id2); err != nil {
		t.Fatalf("first lookup after the outage: %v", err)
	}

	status.Store(http.StatusNotFound) // the document is gone: a refusal, and no fallback any more
	cache.expire(cacheKey("cimd", id2))
	if _, err := r.Get(ctx, id2); !errors.Is(err, ErrMetadataDocument) {
		t.Fatalf("404: %v", err)
	}
	status.Store(http.StatusServiceUnavailable)
	cache.expire(cacheKey("cimd", id2))
	if _, err := r.Get(ctx, id2); !errors.Is(err, ErrMetadataUnavailable) {
		t.Fatalf("outage after a 404: %v (the last good copy must be gone)", err)
	}
}
