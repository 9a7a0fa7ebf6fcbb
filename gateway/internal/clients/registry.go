package clients

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"
)

// Errors returned by the registry.
var (
	// ErrNotFound: no client with this id (or an id that cannot exist).
	ErrNotFound = errors.New("client not found")
	// ErrInvalidClient: client authentication at the token endpoint failed (OAuth invalid_client).
	ErrInvalidClient = errors.New("invalid client authentication")
	// ErrMetadataDocument: a Client ID Metadata Document is invalid, or its URL answered that
	// it does not exist (a 4xx status): the client is unknown.
	ErrMetadataDocument = errors.New("client metadata document refused")
	// ErrMetadataUnavailable: a Client ID Metadata Document could not be fetched for a reason
	// that may pass (network error, timeout, 5xx, 429) and no earlier good copy is kept: the
	// client is not unknown, the lookup failed (503, not invalid_client).
	ErrMetadataUnavailable = errors.New("client metadata document unavailable")
)

// Defaults for Options.
const (
	DefaultCacheTTL         = time.Hour
	DefaultMetadataTimeout  = 5 * time.Second
	DefaultMetadataMaxBytes = 5 << 10
	DefaultMetadataTTL      = time.Hour
	MinMetadataTTL          = time.Minute
	MaxMetadataTTL          = 24 * time.Hour
	// TouchInterval is the least time between two LastUsedAt updates of one client.
	TouchInterval = time.Hour
	// DefaultUnusedFor is how long a dynamic registration may stay unused before Sweep removes it.
	DefaultUnusedFor = 30 * 24 * time.Hour
	negativeTTL      = time.Minute
	dynamicIDBytes   = 16
	secretBytes      = 32
)

// Resolver answers the IP addresses of a host name (net.DefaultResolver.LookupNetIP by default).
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// Options configure a Registry.
type Options struct {
	// Backend stores dynamic registrations durably. Required.
	Backend Backend
	// Cache sits in front of Backend and holds fetched metadata documents (default: in memory).
	Cache Cache
	// CacheTTL is how long a dynamic registration stays in Cache (default 1 h). Registrations
	// do not expire with it: a miss reloads from Backend.
	CacheTTL time.Duration
	// Preregistered are the operator's clients (see LoadPreregistered).
	Preregistered []Client

	// DisableMetadataDocuments turns Client ID Metadata Document support off.
	DisableMetadataDocuments bool
	// Resolver replaces DNS resolution for metadata document fetches (tests).
	Resolver Resolver
	// AllowLoopbackMetadata lets metadata documents be fetched from loopback addresses, over
	// http or https. Test-only: the caller allows it only together with --dev.
	AllowLoopbackMetadata bool
	// MetadataRootCAs replaces the system roots for metadata fetches (tests).
	MetadataRootCAs *x509.CertPool
	// MetadataTimeout (default 5 s) and MetadataMaxBytes (default 5 KiB) bound one fetch.
	MetadataTimeout  time.Duration
	MetadataMaxBytes int64

	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives registry events (default slog.Default()).
	Logger *slog.Logger
}

// Registry resolves client ids to clients and registers new ones.
type Registry struct {
	opts    Options
	backend Backend
	cache   Cache
	pre     map[string]*Client
	fetcher *metadataFetcher
	group   singleflight.Group
	now     func() time.Time
	log     *slog.Logger
}

// NewRegistry validates the options and the pre-registered clients.
func NewRegistry(_ context.Context, opts Options) (*Registry, error) {
	if opts.Backend == nil {
		return nil, errors.New("clients: registry needs a backend")
	}
	r := &Registry{opts: opts, backend: opts.Backend, cache: opts.Cache, now: opts.Now, log: opts.Logger,
		pre: map[string]*Client{}}
	if r.cache == nil {
		r.cache = NewMemoryCache(0)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.opts.CacheTTL <= 0 {
		r.opts.CacheTTL = DefaultCacheTTL
	}
	for i := range opts.Preregistered {
		c := opts.Preregistered[i]
		if err := checkPreregistered(&c); err != nil {
			return nil, err
		}
		if _, dup := r.pre[c.ID]; dup {
			return nil, fmt.Errorf("clients: pre-registered client %q listed twice", c.ID)
		}
		r.pre[c.ID] = &c
	}
	if !opts.DisableMetadataDocuments {
		r.fetcher = newMetadataFetcher(opts)
	}
	return r, nil
}

// MetadataDocumentsSupported reports whether https client ids are resolved as Client ID
// Metadata Documents (for client_id_metadata_document_supported in the AS metadata).
func (r *Registry) MetadataDocumentsSupported() bool { return r.fetcher != nil }

// Get returns the client with this id: a pre-registered client, a Client ID Metadata
// Document (https URL ids, fetched and cached) or a dynamic registration (cache, then backend).
// Unknown ids give an error wrapping ErrNotFound; a refused metadata document gives one
// wrapping ErrMetadataDocument, one that could not be fetched just now ErrMetadataUnavailable.
func (r *Registry) Get(ctx context.Context, clientID string) (*Client, error) {
	if clientID == "" || len(clientID) > maxURILen {
		return nil, ErrNotFound
	}
	if c, ok := r.pre[clientID]; ok {
		cc := *c
		return &cc, nil
	}
	if looksLikeURL(clientID) {
		if r.fetcher == nil {
			return nil, ErrNotFound
		}
		return r.getMetadataDocument(ctx, clientID)
	}
	if !validDynamicID(clientID) {
		return nil, ErrNotFound
	}
	return r.getDynamic(ctx, clientID)
}

func looksLikeURL(id string) bool {
	return strings.HasPrefix(id, "https://") || strings.HasPrefix(id, "http://")
}

func validDynamicID(id string) bool {
	if len(id) != base64.RawURLEncoding.EncodedLen(dynamicIDBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil
}

// cacheKey namespaces and hashes an id so that no client-controlled text becomes a key.
func cacheKey(kind, id string) string {
	sum := sha256.Sum256([]byte(id))
	return "clients:" + kind + ":" + hex.EncodeToString(sum[:16])
}

const negativeMarker = "-"

func (r *Registry) getDynamic(ctx context.Context, id string) (*Client, error) {
	key := cacheKey("dcr", id)
	if doc, err := r.cache.Get(ctx, key); err == nil {
		if string(doc) == negativeMarker {
			return nil, ErrNotFound
		}
		if c, err := decodeClient(doc, id); err == nil {
			return c, nil
		}
	} else if !errors.Is(err, ErrNotFound) {
		r.log.WarnContext(ctx, "client cache read failed", "err", err)
	}
	v, err, _ := r.group.Do(key, func() (any, error) {
		doc, err := r.backend.Load(ctx, id)
		if errors.Is(err, ErrNotFound) {
			_ = r.cache.Set(ctx, key, []byte(negativeMarker), negativeTTL)
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("clients: load registration: %w", err)
		}
		c, err := decodeClient(doc, id)
		if err != nil {
			return nil, err
		}
		if err := r.cache.Set(ctx, key, doc, r.opts.CacheTTL); err != nil {
			r.log.WarnContext(ctx, "client cache write failed", "err", err)
		}
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	c := *v.(*Client)
	return &c, nil
}

func decodeClient(doc []byte, id string) (*Client, error) {
	var c Client
	if err := json.Unmarshal(doc, &c); err != nil {
		return nil, fmt.Errorf("clients: decode registration: %w", err)
	}
	if c.ID != id || c.Kind != KindDynamic {
		return nil, fmt.Errorf("clients: stored registration does not match its id")
	}
	return &c, nil
}

// Register handles an RFC 7591 registration body: it validates it (errors are
// *RegistrationError), stores the client durably and returns the response, including the
// client secret for a confidential client (stored only as its SHA-256).
func (r *Registry) Register(ctx context.Context, body []byte) (*RegistrationResponse, error) {
	c, err := ParseMetadata(body)
	if err != nil {
		return nil, err
	}
	id, err := randomString(dynamicIDBytes)
	if err != nil {
		return nil, err
	}
	c.ID = id
	c.Kind = KindDynamic
	c.CreatedAt = r.now().UTC().Truncate(time.Second)
	var secret string
	if !c.Public() {
		if secret, err = randomString(secretBytes); err != nil {
			return nil, err
		}
		sum := sha256.Sum256([]byte(secret))
		c.SecretHash = sum[:]
	}
	if err := r.save(ctx, c); err != nil {
		return nil, err
	}
	r.log.InfoContext(ctx, "client registered", "client_id", c.ID, "application_type", c.ApplicationType,
		"token_endpoint_auth_method", c.TokenEndpointAuthMethod, "redirect_uris", len(c.RedirectURIs))
	return response(c, secret), nil
}

func (r *Registry) save(ctx context.Context, c *Client) error {
	doc, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("clients: encode registration: %w", err)
	}
	if err := r.backend.Save(ctx, c.ID, doc); err != nil {
		return fmt.Errorf("clients: store registration: %w", err)
	}
	if err := r.cache.Set(ctx, cacheKey("dcr", c.ID), doc, r.opts.CacheTTL); err != nil {
		r.log.WarnContext(ctx, "client cache write failed", "err", err)
	}
	return nil
}

// Authenticate checks a token-endpoint client authentication. method is how the request
// authenticated: "none" (client_id only), "client_secret_basic" or "client_secret_post".
// It must be the client's registered method, and the secret must match (constant time).
// Every failure wraps ErrInvalidClient.
func (r *Registry) Authenticate(ctx context.Context, clientID, secret, method string) (*Client, error) {
	c, err := r.Get(ctx, clientID)
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrMetadataDocument) {
			return nil, fmt.Errorf("%w: unknown client", ErrInvalidClient)
		}
		return nil, err
	}
	want := c.TokenEndpointAuthMethod
	if want == "" {
		want = AuthNone
	}
	if method != want {
		return nil, fmt.Errorf("%w: client uses %s, request used %s", ErrInvalidClient, want, method)
	}
	if want == AuthNone {
		if secret != "" {
			return nil, fmt.Errorf("%w: public client sent a secret", ErrInvalidClient)
		}
		return c, nil
	}
	sum := sha256.Sum256([]byte(secret))
	if len(c.SecretHash) != sha256.Size || secret == "" || subtle.ConstantTimeCompare(sum[:], c.SecretHash) != 1 {
		return nil, fmt.Errorf("%w: wrong client secret", ErrInvalidClient)
	}
	return c, nil
}

// Touch records that a dynamic client was used, at most once per TouchInterval.
func (r *Registry) Touch(ctx context.Context, clientID string) error {
	if _, ok := r.pre[clientID]; ok || looksLikeURL(clientID) || !validDynamicID(clientID) {
		return nil
	}
	c, err := r.getDynamic(ctx, clientID)
	if err != nil {
		return err
	}
	now := r.now().UTC()
	if now.Sub(c.LastUsedAt) < TouchInterval {
		return nil
	}
	c.LastUsedAt = now.Truncate(time.Second)
	return r.save(ctx, c)
}

// Sweep removes dynamic registrations unused (neither created nor used) for unusedFor
// (DefaultUnusedFor when ≤ 0). Pre-registered clients are never touched. It returns how many
// registrations it removed.
func (r *Registry) Sweep(ctx context.Context, unusedFor time.Duration) (int, error) {
	if unusedFor <= 0 {
		unusedFor = DefaultUnusedFor
	}
	ids, err := r.backend.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("clients: sweep: %w", err)
	}
	cutoff := r.now().Add(-unusedFor)
	removed := 0
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if _, ok := r.pre[id]; ok {
			continue
		}
		doc, err := r.backend.Load(ctx, id)
		if err != nil {
			continue
		}
		c, err := decodeClient(doc, id)
		if err != nil {
			r.log.WarnContext(ctx, "sweep: unreadable registration kept", "client_id", id, "err", err)
			continue
		}
		last := c.CreatedAt
		if c.LastUsedAt.After(last) {
			last = c.LastUsedAt
		}
		if !last.Before(cutoff) {
			continue
		}
		if err := r.backend.Delete(ctx, id); err != nil {
			return removed, fmt.Errorf("clients: sweep: %w", err)
		}
		_ = r.cache.Del(ctx, cacheKey("dcr", id))
		removed++
		r.log.InfoContext(ctx, "unused client registration removed", "client_id", id, "last_used", last)
	}
	return removed, nil
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("clients: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// SweepEvery runs Sweep every interval until ctx ends, logging the outcome. Several replicas
// may run it at once: removing a registration twice is harmless.
func (r *Registry) SweepEvery(ctx context.Context, interval, unusedFor time.Duration) {
	if interval <= 0 {
		interval = 24 * time.Hour
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := r.Sweep(ctx, unusedFor); err != nil {
			r.log.WarnContext(ctx, "client registration sweep failed", "err", err, "removed", n)
		} else if n > 0 {
			r.log.InfoContext(ctx, "client registration sweep", "removed", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
