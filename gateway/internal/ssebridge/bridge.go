// Package ssebridge serves the legacy HTTP+SSE MCP transport (2024-11-05: GET /mcp/sse and
// POST /mcp/message) on top of the stateless Streamable HTTP backend. The gateway holds each
// client's event stream itself: a POST to /mcp/message is answered 202 at once and turned into a
// backend POST to /mcp, and everything the backend answers is written onto the stream as
// `event: message`.
//
// Several replicas may serve one deployment without sticky sessions. Each replica subscribes to
// one Redis channel of its own (mcpgate:sse:replica:{replica}); the key mcpgate:sse:{session}
// names the replica holding a stream (kept alive by a heartbeat TTL). A replica that receives a
// POST for a stream it does not hold publishes the message to the holder, which calls the
// backend and writes the stream. When the holder is gone the POST gets 404.
//
// Limits (all per replica): open streams in total and per user (503 beyond), the message size
// (413), the messages of one stream accepted but not finished (503 beyond, or a JSON-RPC error
// on the stream when the POST came through another replica), and the events waiting to be
// written to a slow client (the stream is closed when they overflow: the client reconnects).
//
// A stream ends when its grant ends: every replica follows grants.RevokedChannel and closes the
// streams it holds for a revoked grant at once, and checks the grants of its streams now and
// then (Config.Grants, one batched lookup per GrantCheckInterval) to close those whose grant
// expired or was revoked while the revocation subscription was down.
//
// On HTTP/1.1 a stream's connection is taken over from net/http once it is open, so an idle
// stream costs one small goroutine and no buffers (about 10 KiB in all). See docs/sse.md.
package ssebridge

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/mcpproxy"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// Paths of the legacy endpoints.
const (
	SSEPath     = "/mcp/sse"
	MessagePath = "/mcp/message"
)

// Defaults.
const (
	DefaultKeepAlive         = 15 * time.Second
	DefaultHeartbeat         = 20 * time.Second
	DefaultMaxStreams        = 10_000
	DefaultMaxStreamsPerUser = 32
	DefaultMaxMessageBytes   = 4 << 20
	DefaultMaxPending        = 32
	DefaultMaxQueuedEvents   = 256
	DefaultMaxQueuedBytes    = 32 << 20
	DefaultMaxQueuedPerUser  = 64 << 20
	DefaultMaxResponseBytes  = 16 << 20
	DefaultWriteTimeout      = 30 * time.Second
	DefaultBackendTimeout    = 240 * time.Second
	DefaultShutdownGrace     = 5 * time.Second
	// DefaultGrantCheckInterval is how often a replica checks that the grants of its streams
	// still exist (revocations themselves arrive within a second through pub/sub).
	DefaultGrantCheckInterval = 30 * time.Second
)

// Revocations remembered for streams that open while the revocation is on its way (the token
// was verified just before the grant was revoked): such a stream is closed at once.
const (
	recentRevokedWindow = 5 * time.Second
	maxRecentRevoked    = 100_000
	// grantCheckBatch is how many grants one lookup of the periodic check asks about.
	grantCheckBatch = 500
)

// GrantChecker reports which grants still exist (grants.Manager satisfies it).
type GrantChecker interface {
	Exist(ctx context.Context, ids []string) ([]bool, error)
}

// Chain is the MCP policy chain (mcpproxy.Proxy satisfies it).
type Chain interface {
	Chain(ep mcpproxy.Endpoint, next mcpproxy.Handler) http.Handler
	Endpoint(path string) mcpproxy.Endpoint
	BackendHeaders(h http.Header, g *grants.Grant, key string)
}

// Config configures a Bridge. Chain, BackendURL, Keys, Store and ReplicaID are required.
type Config struct {
	// Chain runs the policy chain (Host/Origin, bearer, grant, rate limit) before the bridge.
	Chain Chain
	// BackendURL is the function app's base URL; messages go to BackendURL + "/mcp".
	BackendURL string
	// Keys supplies the function key (refreshed once on a backend 401).
	Keys mcpproxy.KeySource
	// Store holds the stream keys and carries messages between replicas (Redis with several
	// replicas; the memory store for one).
	Store store.Store
	// ReplicaID names this replica; it must be unique among the running replicas.
	ReplicaID string
	// Transport is the backend round tripper (default mcpproxy.NewTransport(BackendTimeout)).
	Transport http.RoundTripper
	// KeepAlive is the interval of ": ping" comments on an idle stream (default 15 s, well
	// under Azure's 230 s front-end idle limit).
	KeepAlive time.Duration
	// Heartbeat is how often this replica refreshes its stream keys; their TTL is three
	// heartbeats (default 20 s → 60 s).
	Heartbeat time.Duration
	// MaxStreams bounds the open streams on this replica (default 10,000); MaxStreamsPerUser
	// bounds them per user (default 32). Beyond: 503.
	MaxStreams, MaxStreamsPerUser int
	// MaxMessageBytes bounds a POSTed message (default 4 MiB; 413 beyond).
	MaxMessageBytes int64
	// MaxPending bounds the messages of one stream accepted but not finished (default 32).
	MaxPending int
	// MaxQueuedEvents and MaxQueuedBytes bound what waits to be written to a slow client
	// (defaults 256 events, 32 MiB); beyond, the stream is closed.
	MaxQueuedEvents int
	MaxQueuedBytes  int64
	// MaxQueuedBytesPerUser bounds what waits to be written, or is being written, to all the
	// streams of one user on this replica together (default 64 MiB): one user with many
	// streams that are not read cannot hold MaxStreamsPerUser × MaxQueuedBytes. Beyond, the
	// stream the event is for is closed.
	MaxQueuedBytesPerUser int64
	// MaxResponseBytes bounds one backend answer (a JSON body or one event; default 16 MiB).
	MaxResponseBytes int64
	// WriteTimeout bounds one write to the client (default 30 s); a client that stops
	// reading loses its stream.
	WriteTimeout time.Duration
	// BackendTimeout bounds the wait for the backend's response headers when Transport is
	// nil (default 240 s).
	BackendTimeout time.Duration
	// ShutdownGrace is how long Shutdown lets messages in flight finish before it closes the
	// streams (default 5 s).
	ShutdownGrace time.Duration
	// Grants, when set, is asked every GrantCheckInterval (default 30 s) and whenever the
	// revocation subscription comes back up whether the grants of the open streams still
	// exist; streams whose grant is gone (expired, or revoked while this replica missed the
	// message) are closed. Revocations published on grants.RevokedChannel close streams
	// without it.
	Grants             GrantChecker
	GrantCheckInterval time.Duration
	// Logger receives operational logs (never tokens, keys or message bodies).
	Logger *slog.Logger
	// Registerer receives the bridge's metrics (nil: not registered).
	Registerer prometheus.Registerer
}

// Bridge is the legacy SSE transport.
type Bridge struct {
	cfg      Config
	backend  string // BackendURL + "/mcp"
	sseEP    mcpproxy.Endpoint
	msgEP    mcpproxy.Endpoint
	channel  string // this replica's channel
	client   *http.Client
	log      *slog.Logger
	metrics  *metrics
	keyTTL   time.Duration
	ready    atomic.Bool // the replica's subscription is up
	closing  atomic.Bool
	handlers sync.WaitGroup

	mu      sync.Mutex
	streams map[string]*stream
	perUser map[string]*userStreams
	byGrant map[string][]*stream // open streams by grant id
	// Grants revoked in the last recentRevokedWindow, oldest first in revokedOrder.
	revoked      map[string]time.Time
	revokedOrder []revokedGrant
}

// userStreams is one user's share of this replica: open streams (under Bridge.mu) and the
// bytes queued or being written to them (shared by those streams).
type userStreams struct {
	n      int
	queued atomic.Int64
}

type revokedGrant struct {
	id string
	at time.Time
}

// New validates cfg and builds the bridge. Call Run to receive messages from other replicas
// (streams are refused with 503 until its subscription is up) and Shutdown to end.
func New(cfg Config) (*Bridge, error) {
	if cfg.Chain == nil || cfg.Keys == nil || cfg.Store == nil {
		return nil, errors.New("ssebridge: Chain, Keys and Store are required")
	}
	if cfg.ReplicaID == "" || strings.ContainsAny(cfg.ReplicaID, "\n\r") {
		return nil, errors.New("ssebridge: a ReplicaID (one line) is required")
	}
	u, err := url.Parse(strings.TrimSuffix(cfg.BackendURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("ssebridge: backend URL %q must be an absolute http(s) URL", cfg.BackendURL)
	}
	setDefault(&cfg.KeepAlive, DefaultKeepAlive)
	setDefault(&cfg.Heartbeat, DefaultHeartbeat)
	setDefault(&cfg.MaxStreams, DefaultMaxStreams)
	setDefault(&cfg.MaxStreamsPerUser, DefaultMaxStreamsPerUser)
	setDefault(&cfg.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&cfg.MaxPending, DefaultMaxPending)
	setDefault(&cfg.MaxQueuedEvents, DefaultMaxQueuedEvents)
	setDefault(&cfg.MaxQueuedBytes, DefaultMaxQueuedBytes)
	setDefault(&cfg.MaxQueuedBytesPerUser, DefaultMaxQueuedPerUser)
	setDefault(&cfg.MaxResponseBytes, DefaultMaxResponseBytes)
	setDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefault(&cfg.BackendTimeout, DefaultBackendTimeout)
	setDefault(&cfg.ShutdownGrace, DefaultShutdownGrace)
	setDefault(&cfg.GrantCheckInterval, DefaultGrantCheckInterval)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Transport == nil {
		cfg.Transport = mcpproxy.NewTransport(cfg.BackendTimeout)
	}
	b := &Bridge{
		cfg:     cfg,
		backend: u.String() + "/mcp",
		sseEP:   cfg.Chain.Endpoint(SSEPath),
		channel: store.Key("sse", "replica", cfg.ReplicaID),
		client:  &http.Client{Transport: cfg.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		log:     cfg.Logger,
		metrics: newMetrics(cfg.Registerer),
		keyTTL:  3 * cfg.Heartbeat,
		streams: map[string]*stream{},
		perUser: map[string]*userStreams{},
		byGrant: map[string][]*stream{},
		revoked: map[string]time.Time{},
	}
	// /mcp/message belongs to /mcp/sse: same resource and metadata, its own name in logs.
	b.msgEP = b.sseEP
	b.msgEP.Name = MessagePath
	return b, nil
}

func setDefault[T int | int64 | time.Duration](p *T, def T) {
	if *p <= 0 {
		*p = def
	}
}

// Register mounts GET /mcp/sse and POST /mcp/message on mux, each behind the policy chain.
func (b *Bridge) Register(mux *http.ServeMux) {
	mux.Handle(SSEPath, b.SSEHandler())
	mux.Handle(MessagePath, b.MessageHandler())
}

// SSEHandler is the /mcp/sse handler (chain + stream).
func (b *Bridge) SSEHandler() http.Handler {
	return b.cfg.Chain.Chain(b.sseEP, mcpproxy.HandlerFunc(b.serveSSE))
}

// MessageHandler is the /mcp/message handler (chain + message).
func (b *Bridge) MessageHandler() http.Handler {
	return b.cfg.Chain.Chain(b.msgEP, mcpproxy.HandlerFunc(b.serveMessage))
}

// Ready reports whether the replica's subscription is up (streams are accepted).
func (b *Bridge) Ready() bool { return b.ready.Load() }

// OpenStreams returns the number of streams open on this replica.
func (b *Bridge) OpenStreams() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.streams)
}

// Run subscribes to this replica's channel and to grant revocations, refreshes the stream keys
// and checks the streams' grants until ctx ends; then it shuts the bridge down (Shutdown,
// within ShutdownGrace plus a few seconds) while the store is still there, so streams end
// cleanly and their keys are deleted.
func (b *Bridge) Run(ctx context.Context) {
	sub, err := b.cfg.Store.Subscribe(ctx, b.channel)
	if err != nil {
		b.log.Error("sse bridge: subscribe failed; legacy SSE streams are refused", "err", err)
		return
	}
	rsub, err := b.cfg.Store.Subscribe(ctx, grants.RevokedChannel)
	if err != nil {
		_ = sub.Close()
		b.log.Error("sse bridge: subscribe to grant revocations failed; legacy SSE streams are refused", "err", err)
		return
	}
	var checker sync.WaitGroup
	cctx, stopChecker := context.WithCancel(ctx)
	kick := make(chan struct{}, 1)
	if b.cfg.Grants != nil {
		checker.Go(func() { b.checkGrantsLoop(cctx, kick) })
	}
	defer func() {
		stopChecker()
		checker.Wait()
		sctx, cancel := context.WithTimeout(context.Background(), b.cfg.ShutdownGrace+5*time.Second)
		if err := b.Shutdown(sctx); err != nil {
			b.log.Warn("sse bridge: shutdown incomplete", "err", err)
		}
		cancel()
		b.setReady(false)
		_ = sub.Close()
		_ = rsub.Close()
	}()
	hb := time.NewTicker(b.cfg.Heartbeat)
	defer hb.Stop()
	msgs, states := sub.Messages(), sub.State()
	revoked, rstates := rsub.Messages(), rsub.State()
	for {
		select {
		case <-ctx.Done():
			return
		case up, ok := <-states:
			if !ok {
				states = nil
				continue
			}
			b.setReady(up)
		case m, ok := <-msgs:
			if !ok {
				return
			}
			b.receive(m)
		case id, ok := <-revoked:
			if !ok {
				revoked = nil
				continue
			}
			b.closeGrant(string(id), "grant_revoked")
		case up, ok := <-rstates:
			if !ok {
				rstates = nil
				continue
			}
			if up {
				// Revocations may have been missed while the subscription was down.
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		case <-hb.C:
			b.heartbeat(ctx)
		}
	}
}

// closeGrant closes the streams this replica holds for a grant. A revocation is remembered
// for a few seconds, so a stream whose token was verified just before it closes too.
func (b *Bridge) closeGrant(id, reason string) {
	b.mu.Lock()
	if reason == "grant_revoked" {
		b.rememberRevokedLocked(id, time.Now())
	}
	list := slices.Clone(b.byGrant[id])
	b.mu.Unlock()
	for _, s := range list {
		s.close(reason)
	}
}

// rememberRevokedLocked records a revocation (bounded: the oldest are forgotten first; the
// periodic grant check catches what this misses). Caller holds b.mu.
func (b *Bridge) rememberRevokedLocked(id string, now time.Time) {
	n := 0
	for n < len(b.revokedOrder) && (now.Sub(b.revokedOrder[n].at) >= recentRevokedWindow || len(b.revokedOrder)-n >= maxRecentRevoked) {
		if old := b.revokedOrder[n]; b.revoked[old.id].Equal(old.at) {
			delete(b.revoked, old.id)
		}
		n++
	}
	b.revokedOrder = append(b.revokedOrder[n:], revokedGrant{id, now})
	b.revoked[id] = now
}

// recentlyRevokedLocked reports whether the grant was revoked within recentRevokedWindow.
// Caller holds b.mu.
func (b *Bridge) recentlyRevokedLocked(id string, now time.Time) bool {
	at, ok := b.revoked[id]
	return ok && now.Sub(at) < recentRevokedWindow
}

// checkGrantsLoop runs checkGrants every GrantCheckInterval and when kicked.
func (b *Bridge) checkGrantsLoop(ctx context.Context, kick <-chan struct{}) {
	t := time.NewTicker(b.cfg.GrantCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
		b.checkGrants(ctx)
	}
}

// checkGrants asks which grants of the open streams still exist, grantCheckBatch at a time,
// and closes the streams of those that do not. A failed lookup closes nothing.
func (b *Bridge) checkGrants(ctx context.Context) {
	b.mu.Lock()
	ids := make([]string, 0, len(b.byGrant))
	for id := range b.byGrant {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	for chunk := range slices.Chunk(ids, grantCheckBatch) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		exist, err := b.cfg.Grants.Exist(cctx, chunk)
		cancel()
		if err == nil && len(exist) != len(chunk) {
			err = fmt.Errorf("ssebridge: %d answers for %d grants", len(exist), len(chunk))
		}
		if err != nil {
			if ctx.Err() == nil {
				b.metrics.grantCheckErrors.Inc()
				b.log.Warn("sse bridge: grant check failed; streams stay open", "err", err)
			}
			return
		}
		for i, ok := range exist {
			if !ok {
				b.closeGrant(chunk[i], "grant_gone")
			}
		}
	}
}

func (b *Bridge) setReady(up bool) {
	b.ready.Store(up)
	if up {
		b.metrics.subscriptionUp.Set(1)
	} else {
		b.metrics.subscriptionUp.Set(0)
	}
}

// heartbeat refreshes the key of every stream this replica holds, in batches.
func (b *Bridge) heartbeat(ctx context.Context) {
	b.mu.Lock()
	list := make([]*stream, 0, len(b.streams))
	for _, s := range b.streams {
		list = append(list, s)
	}
	b.mu.Unlock()
	const batch = 500
	for chunk := range slices.Chunk(list, batch) {
		if ctx.Err() != nil {
			return
		}
		keys := make([]string, len(chunk))
		for i, s := range chunk {
			keys[i] = s.key
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		found, err := b.cfg.Store.Expire(cctx, b.keyTTL, keys...)
		for i := 0; err == nil && i < len(chunk); i++ {
			if !found[i] && b.holds(chunk[i]) {
				// The key vanished (expired during an outage, or Redis restarted): restore it.
				err = b.cfg.Store.Set(cctx, chunk[i].key, chunk[i].record, b.keyTTL)
			}
		}
		cancel()
		if err != nil {
			b.metrics.heartbeatErrors.Inc()
			b.log.Warn("sse bridge: stream key heartbeat failed", "err", err)
			return
		}
	}
}

func (b *Bridge) holds(s *stream) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.streams[s.id] == s
}

// Shutdown refuses new streams and messages, lets the messages in flight finish (up to
// ShutdownGrace), closes every open stream cleanly (each response ends, so clients see the end
// of the stream and may reconnect elsewhere) and waits until they are cleaned up or ctx ends.
// It may be called more than once.
func (b *Bridge) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	b.closing.Store(true)
	list := make([]*stream, 0, len(b.streams))
	for _, s := range b.streams {
		list = append(list, s)
	}
	b.mu.Unlock()
	grace := time.NewTimer(b.cfg.ShutdownGrace)
	defer grace.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for slices.ContainsFunc(list, (*stream).busy) {
		select {
		case <-grace.C:
			break wait
		case <-ctx.Done():
			break wait
		case <-tick.C:
		}
	}
	for _, s := range list {
		s.close("shutdown")
	}
	done := make(chan struct{})
	go func() { b.handlers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ssebridge: shutdown: %w", ctx.Err())
	}
}

// binding hashes the grant id and user id a stream is bound to (kept in Redis and in messages
// between replicas instead of the grant id itself).
func binding(g *grants.Grant) string {
	h := sha256.New()
	h.Write([]byte("mcpgate-sse-binding\x00"))
	h.Write([]byte(g.ID))
	h.Write([]byte{0})
	h.Write([]byte(g.User.ID()))
	return hex.EncodeToString(h.Sum(nil))
}

func sameBinding(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// newSessionID returns 256 random bits, base64url (43 characters).
func newSessionID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validSessionID reports whether s has the shape of a session id.
func validSessionID(s string) bool {
	if len(s) != 43 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// holderRecord is the value of mcpgate:sse:{id}.
type holderRecord struct {
	Replica string `json:"r"`
	Binding string `json:"b"`
}

func hashLabel(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:6])
}

func encodeRecord(replica, bind string) []byte {
	b, _ := json.Marshal(holderRecord{Replica: replica, Binding: bind})
	return b
}
