package ssebridge

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/mcpproxy"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// stream is one client's SSE stream held by this replica.
type stream struct {
	b       *Bridge
	id      string
	key     string // mcpgate:sse:{id}
	record  []byte // the key's value
	binding string
	user    string
	grant   *grants.Grant // the grant that opened the stream (identity for the backend)

	ctx    context.Context // ends when the stream closes: cancels backend calls
	cancel context.CancelFunc

	out         chan []byte // events waiting to be written
	queuedBytes atomic.Int64
	done        chan struct{} // closed by close()
	closeOnce   sync.Once
	reason      atomic.Value // string: why close() was called

	// version is the MCP protocol version for backend requests: the client's requested
	// version once it sent initialize, the negotiated one once the backend answered.
	version atomic.Value // string

	mu      sync.Mutex
	jobs    []job // accepted, not yet dispatched (FIFO)
	pending int   // accepted and not finished (queued + in flight)
	running bool  // the dispatcher goroutine runs
}

// close ends the stream (idempotent); the handler goroutine then cleans up.
func (s *stream) close(reason string) {
	s.closeOnce.Do(func() {
		s.reason.Store(reason)
		close(s.done)
		s.cancel()
	})
}

func (s *stream) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// send queues a complete SSE event for the client. A client too slow to keep the queue
// within bounds loses its stream (it reconnects; memory stays bounded).
func (s *stream) send(ev []byte) {
	if s.closed() {
		return
	}
	if s.queuedBytes.Add(int64(len(ev))) > s.b.cfg.MaxQueuedBytes {
		s.b.metrics.dropped.WithLabelValues("slow_client").Inc()
		s.close("slow_client")
		return
	}
	select {
	case s.out <- ev:
	default:
		s.b.metrics.dropped.WithLabelValues("slow_client").Inc()
		s.close("slow_client")
	}
}

// enqueue accepts a message for the backend in FIFO order. It reports false when the stream
// already has MaxPending messages unfinished (or is closed).
func (s *stream) enqueue(j job) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed() || s.pending >= s.b.cfg.MaxPending {
		return false
	}
	s.pending++
	s.jobs = append(s.jobs, j)
	if !s.running {
		s.running = true
		go s.dispatch()
	}
	return true
}

// finish marks one accepted message finished.
func (s *stream) finish() {
	s.mu.Lock()
	s.pending--
	s.mu.Unlock()
}

// dispatch is the stream's FIFO worker: it takes messages in arrival order. Notifications and
// responses from the client are delivered to the backend before the next message is taken;
// requests are started in order and run concurrently (a long tool call does not hold up the
// session), each writing its events in order. It exits when the queue is empty, so an idle
// stream holds no goroutine besides its handler.
func (s *stream) dispatch() {
	for {
		s.mu.Lock()
		if len(s.jobs) == 0 || s.closed() {
			s.running = false
			if s.closed() {
				s.pending -= len(s.jobs)
				s.jobs = nil
			}
			s.mu.Unlock()
			return
		}
		j := s.jobs[0]
		s.jobs[0] = job{}
		s.jobs = s.jobs[1:]
		s.mu.Unlock()
		if !j.hasID {
			s.b.call(s, j)
			s.finish()
			continue
		}
		go func() {
			defer s.finish()
			s.b.call(s, j)
		}()
	}
}

// serveSSE opens a stream (GET /mcp/sse after the chain).
func (b *Bridge) serveSSE(w http.ResponseWriter, r *http.Request, c *mcpproxy.Call) {
	if r.Method != http.MethodGet {
		c.Outcome = "method_not_allowed"
		w.Header()["Allow"] = []string{"GET"}
		writeRPCError(w, http.StatusMethodNotAllowed, codeInvalidRequest, "Method not allowed: open the stream with GET")
		return
	}
	if b.closing.Load() || !b.ready.Load() {
		c.Outcome = "sse_not_ready"
		b.metrics.rejected.WithLabelValues("not_ready").Inc()
		w.Header()["Retry-After"] = []string{"1"}
		writeRPCError(w, http.StatusServiceUnavailable, codeUnavailable, "Service temporarily unavailable, retry shortly")
		return
	}
	g := c.Grant
	s := &stream{b: b, id: newSessionID(), grant: g, binding: binding(g), user: g.User.ID(),
		out: make(chan []byte, b.cfg.MaxQueuedEvents), done: make(chan struct{})}
	s.key = store.Key("sse", s.id)
	s.record = encodeRecord(b.cfg.ReplicaID, s.binding)
	// The stream's context is not the request's: a stream ends when its client goes away,
	// and then everything it started ends too.
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(r.Context()))
	if reason := b.add(s); reason != "" {
		s.cancel()
		c.Outcome = reason
		b.metrics.rejected.WithLabelValues(reason).Inc()
		w.Header()["Retry-After"] = []string{"5"}
		writeRPCError(w, http.StatusServiceUnavailable, codeUnavailable, "Too many open SSE streams, retry later")
		return
	}
	defer b.remove(s)
	sctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	err := b.cfg.Store.Set(sctx, s.key, s.record, b.keyTTL)
	cancel()
	if err != nil {
		c.Outcome = "store_unavailable"
		b.metrics.rejected.WithLabelValues("store_unavailable").Inc()
		w.Header()["Retry-After"] = []string{"1"}
		writeRPCError(w, http.StatusServiceUnavailable, codeUnavailable, "Service temporarily unavailable, retry shortly")
		return
	}
	c.Outcome = "sse_stream"
	rc := http.NewResponseController(w)
	h := w.Header()
	h["Content-Type"] = []string{"text/event-stream"}
	h["Cache-Control"] = []string{"no-cache, no-transform"}
	h["X-Accel-Buffering"] = []string{"no"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(http.StatusOK)
	first := []byte("event: endpoint\ndata: " + MessagePath + "?sessionId=" + s.id + "\n\n")
	if !b.write(rc, w, first) {
		return
	}
	b.log.Debug("sse stream opened", "sse_session", hashLabel(s.id), "request_id", c.RequestID)

	ping := []byte(": ping\n\n")
	timer := time.NewTimer(b.cfg.KeepAlive)
	defer timer.Stop()
	for {
		select {
		case ev := <-s.out:
			s.queuedBytes.Add(-int64(len(ev)))
			if !b.write(rc, w, ev) {
				return
			}
			timer.Reset(b.cfg.KeepAlive)
		case <-timer.C:
			if !b.write(rc, w, ping) {
				return
			}
			timer.Reset(b.cfg.KeepAlive)
		case <-r.Context().Done():
			s.close("client_gone")
			return
		case <-s.done:
			// Write what was already queued when the stream is ended on purpose (e.g. a
			// JSON-RPC error just before a shutdown), then end the response.
			for {
				select {
				case ev := <-s.out:
					if !b.write(rc, w, ev) {
						return
					}
				default:
					return
				}
			}
		}
	}
}

// write writes and flushes p within the write timeout.
func (b *Bridge) write(rc *http.ResponseController, w http.ResponseWriter, p []byte) bool {
	_ = rc.SetWriteDeadline(time.Now().Add(b.cfg.WriteTimeout))
	if _, err := w.Write(p); err != nil {
		return false
	}
	return rc.Flush() == nil
}

// add registers s within the limits; it returns the refusal reason or "".
func (b *Bridge) add(s *stream) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing.Load() {
		return "shutting_down"
	}
	if len(b.streams) >= b.cfg.MaxStreams {
		return "replica_stream_limit"
	}
	if b.perUser[s.user] >= b.cfg.MaxStreamsPerUser {
		return "user_stream_limit"
	}
	b.handlers.Add(1) // under mu, so never concurrent with Shutdown's Wait from zero
	b.streams[s.id] = s
	b.perUser[s.user]++
	b.metrics.streams.Inc()
	return ""
}

// remove unregisters s, ends what it started and deletes its key.
func (b *Bridge) remove(s *stream) {
	s.close("client_gone")
	b.mu.Lock()
	if b.streams[s.id] == s {
		delete(b.streams, s.id)
		if b.perUser[s.user]--; b.perUser[s.user] <= 0 {
			delete(b.perUser, s.user)
		}
		b.metrics.streams.Dec()
	}
	b.mu.Unlock()
	reason, _ := s.reason.Load().(string)
	b.metrics.closed.WithLabelValues(reason).Inc()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 2*time.Second)
	defer cancel()
	if err := b.cfg.Store.Del(ctx, s.key); err != nil {
		b.log.Warn("sse bridge: delete stream key failed (it expires by itself)", "err", err)
	}
	b.log.Debug("sse stream closed", "sse_session", hashLabel(s.id), "reason", reason)
	b.handlers.Done()
}

// lookup returns the local stream id, if this replica holds it.
func (b *Bridge) lookup(id string) *stream {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.streams[id]
}
