package clients

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// metadataFetcher fetches Client ID Metadata Documents with SSRF protection: it resolves the
// host itself, refuses any non-public address, and dials only the checked address.
type metadataFetcher struct {
	client        *http.Client
	resolve       Resolver
	allowLoopback bool
	maxBytes      int64
}

func newMetadataFetcher(opts Options) *metadataFetcher {
	f := &metadataFetcher{resolve: opts.Resolver, allowLoopback: opts.AllowLoopbackMetadata,
		maxBytes: opts.MetadataMaxBytes}
	if f.resolve == nil {
		f.resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if f.maxBytes <= 0 {
		f.maxBytes = DefaultMetadataMaxBytes
	}
	timeout := opts.MetadataTimeout
	if timeout <= 0 {
		timeout = DefaultMetadataTimeout
	}
	dialer := &net.Dialer{Timeout: timeout, Control: f.controlDial}
	transport := &http.Transport{
		Proxy: nil, // a proxy would dial on our behalf, past the address checks
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ip, err := f.checkedAddr(ctx, host)
			if err != nil {
				return nil, err
			}
			return dialer.DialContext(ctx, network, netip.AddrPortFrom(ip, mustPort(port)).String())
		},
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: opts.MetadataRootCAs},
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		MaxIdleConns:           10,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
		DisableCompression:     true,
	}
	f.client = &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return f
}

func mustPort(p string) uint16 {
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return 0
	}
	return uint16(n)
}

// errAddrRefused: the document's host is, or resolves to, an address that is not public
// unicast (a refusal, not an outage).
var errAddrRefused = errors.New("refused address")

// checkedAddr resolves host and returns an address to dial; it refuses the host when any
// answer is not a public unicast address (so a mixed answer cannot be raced).
func (f *metadataFetcher) checkedAddr(ctx context.Context, host string) (netip.Addr, error) {
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		addrs, err = f.resolve(ctx, host)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("resolve %s: %w", host, err)
		}
	}
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("resolve %s: no addresses", host)
	}
	for _, a := range addrs {
		if !f.addrAllowed(a) {
			return netip.Addr{}, fmt.Errorf("%w: %s resolves to %s", errAddrRefused, host, a)
		}
	}
	return addrs[0].Unmap(), nil
}

// controlDial re-checks the address the socket actually connects to.
func (f *metadataFetcher) controlDial(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, err)
	}
	if !f.addrAllowed(ap.Addr()) {
		return fmt.Errorf("%w: dial to %s", errAddrRefused, ap.Addr())
	}
	return nil
}

func (f *metadataFetcher) addrAllowed(a netip.Addr) bool {
	a = a.Unmap()
	if f.allowLoopback && a.IsLoopback() {
		return true
	}
	return PublicAddr(a)
}

var refusedPrefixes = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
		"100::/64", "2001:db8::/32", "2001::/32", "fec0::/10",
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

var (
	nat64Prefix   = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local    = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour     = netip.MustParsePrefix("2002::/16")
	mappedCompatV = netip.MustParsePrefix("::/96")
)

// PublicAddr reports whether a is a public unicast address: not loopback, private,
// link-local, multicast, unspecified, shared (CGNAT), documentation or reserved. IPv4-mapped,
// NAT64 and 6to4 IPv6 addresses are judged by the IPv4 address they embed.
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.Zone() != "" {
		return false
	}
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64Prefix.Contains(a):
			return PublicAddr(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		case nat64Local.Contains(a):
			return false
		case sixToFour.Contains(a):
			return PublicAddr(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
		case mappedCompatV.Contains(a): // deprecated IPv4-compatible, ::, ::1
			return false
		}
	}
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !a.IsGlobalUnicast() {
		return false
	}
	for _, p := range refusedPrefixes {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// checkMetadataURL validates a client id that is a metadata document URL: https (http only
// with the loopback test switch), a host, a path, no user info, fragment or dot segments.
func (f *metadataFetcher) checkMetadataURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("client id is not a URL")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && f.allowLoopback:
		if !loopbackLiteral(u.Hostname()) {
			return nil, fmt.Errorf("client id URL may use http only on a loopback address (test switch)")
		}
	default:
		return nil, fmt.Errorf("client id URL must use https")
	}
	if u.Host == "" || u.Hostname() == "" || u.User != nil || u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, fmt.Errorf("client id URL needs a host and no user info or fragment")
	}
	if u.Path == "" || u.Path == "/" {
		return nil, fmt.Errorf("client id URL needs a path")
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return nil, fmt.Errorf("client id URL must not contain dot segments")
		}
	}
	if u.String() != raw {
		return nil, fmt.Errorf("client id URL is not in normal form")
	}
	return u, nil
}

// fetch retrieves and validates the document; it returns the client and how long to cache it.
func (f *metadataFetcher) fetch(ctx context.Context, clientID string) (*Client, time.Duration, error) {
	u, err := f.checkMetadataURL(clientID)
	if err != nil {
		return nil, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "mcpgate-client-metadata-fetcher")
	resp, err := f.client.Do(req)
	if err != nil {
		if errors.Is(err, errAddrRefused) {
			return nil, 0, fmt.Errorf("fetch: %w", err)
		}
		return nil, 0, &fetchUnavailable{fmt.Errorf("fetch: %w", err)}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
		return nil, 0, &fetchUnavailable{fmt.Errorf("fetch: HTTP status %d", resp.StatusCode)}
	case resp.StatusCode != http.StatusOK:
		return nil, 0, fmt.Errorf("fetch: HTTP status %d", resp.StatusCode)
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return nil, 0, fmt.Errorf("fetch: content type %q is not JSON", resp.Header.Get("Content-Type"))
	}
	if resp.ContentLength > f.maxBytes {
		return nil, 0, fmt.Errorf("fetch: document larger than %d bytes", f.maxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBytes+1))
	if err != nil {
		return nil, 0, &fetchUnavailable{fmt.Errorf("fetch: read: %w", err)}
	}
	if int64(len(body)) > f.maxBytes {
		return nil, 0, fmt.Errorf("fetch: document larger than %d bytes", f.maxBytes)
	}
	c, err := parseMetadataDocument(body, clientID)
	if err != nil {
		return nil, 0, err
	}
	return c, cacheTTL(resp.Header.Get("Cache-Control")), nil
}

// parseMetadataDocument validates a Client ID Metadata Document: client_id equal to the URL,
// redirect_uris required and valid, no client secret (public clients only).
func parseMetadataDocument(body []byte, clientID string) (*Client, error) {
	var probe struct {
		ClientID any `json:"client_id"`
		Secret   any `json:"client_secret"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, fmt.Errorf("document is not a JSON object")
	}
	if s, ok := probe.ClientID.(string); !ok || s != clientID {
		return nil, fmt.Errorf("document client_id does not equal its URL")
	}
	if probe.Secret != nil {
		return nil, fmt.Errorf("document must not contain a client_secret")
	}
	var m Metadata
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("document is not valid client metadata")
	}
	switch m.TokenEndpointAuthMethod {
	case "", AuthNone:
		m.TokenEndpointAuthMethod = AuthNone
	default:
		return nil, fmt.Errorf("token_endpoint_auth_method %q is not supported for metadata documents (only none)", truncate(m.TokenEndpointAuthMethod, 40))
	}
	c, err := m.validate()
	if err != nil {
		return nil, err
	}
	c.ID = clientID
	c.Kind = KindMetadataDocument
	return c, nil
}

// cacheTTL honours Cache-Control max-age within [MinMetadataTTL, MaxMetadataTTL].
func cacheTTL(cc string) time.Duration {
	ttl := DefaultMetadataTTL
	for _, d := range strings.Split(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return MinMetadataTTL
		case strings.HasPrefix(d, "max-age="):
			n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64)
			if err == nil && n >= 0 {
				ttl = time.Duration(min(n, int64(MaxMetadataTTL/time.Second))) * time.Second
			}
		}
	}
	return max(MinMetadataTTL, min(ttl, MaxMetadataTTL))
}

// fetchUnavailable is a fetch failure that may pass: the document host is down, slow or
// overloaded. It is not cached as a refusal.
type fetchUnavailable struct{ err error }

func (e *fetchUnavailable) Error() string { return e.err.Error() }
func (e *fetchUnavailable) Unwrap() error { return e.err }

// staleTTL is how long the last good copy of a metadata document is kept, to be served when
// a refetch fails for a reason that may pass (RFC 5861's stale-if-error): a client whose
// document host has an outage keeps working.
const staleTTL = 7 * 24 * time.Hour

type cachedDocument struct {
	Client *Client `json:"client,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// getMetadataDocument returns the client for a metadata-document id from the cache, or
// fetches it (one fetch per id at a time). Refusals (an invalid document, a 4xx) are cached
// briefly too; a fetch failure that may pass is not, and falls back to the last good copy.
func (r *Registry) getMetadataDocument(ctx context.Context, clientID string) (*Client, error) {
	key, staleKey := cacheKey("cimd", clientID), cacheKey("cimd-last-good", clientID)
	if doc, err := r.cache.Get(ctx, key); err == nil {
		var cd cachedDocument
		if json.Unmarshal(doc, &cd) == nil {
			if cd.Client != nil && cd.Client.ID == clientID {
				return cd.Client, nil
			}
			if cd.Error != "" {
				return nil, fmt.Errorf("%w: %s", ErrMetadataDocument, cd.Error)
			}
		}
	}
	v, err, _ := r.group.Do(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.fetcher.client.Timeout)
		defer cancel()
		c, ttl, err := r.fetcher.fetch(fctx, clientID)
		if unavailable := (*fetchUnavailable)(nil); errors.As(err, &unavailable) {
			if doc, gerr := r.cache.Get(ctx, staleKey); gerr == nil {
				var cd cachedDocument
				if json.Unmarshal(doc, &cd) == nil && cd.Client != nil && cd.Client.ID == clientID {
					r.log.WarnContext(ctx, "client metadata document unavailable; using the last good copy", "client_id", truncate(clientID, 200), "err", err)
					return cd.Client, nil
				}
			}
			r.log.WarnContext(ctx, "client metadata document unavailable", "client_id", truncate(clientID, 200), "err", err)
			return nil, fmt.Errorf("%w: %v", ErrMetadataUnavailable, err)
		}
		if err != nil {
			r.log.WarnContext(ctx, "client metadata document refused", "client_id", truncate(clientID, 200), "err", err)
			if doc, merr := json.Marshal(cachedDocument{Error: err.Error()}); merr == nil {
				_ = r.cache.Set(ctx, key, doc, negativeTTL)
			}
			_ = r.cache.Del(ctx, staleKey) // the document is gone or invalid now: no fallback
			return nil, fmt.Errorf("%w: %v", ErrMetadataDocument, err)
		}
		c.CreatedAt = r.now().UTC().Truncate(time.Second)
		if doc, err := json.Marshal(cachedDocument{Client: c}); err == nil {
			if err := r.cache.Set(ctx, key, doc, ttl); err != nil {
				r.log.WarnContext(ctx, "client cache write failed", "err", err)
			}
			if err := r.cache.Set(ctx, staleKey, doc, staleTTL); err != nil {
				r.log.WarnContext(ctx, "client cache write failed", "err", err)
			}
		}
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	c := *v.(*Client)
	return &c, nil
}

func loopbackLiteral(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}
