package ssebridge

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/mcpproxy"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// stream is one client's SSE stream held by this replica.
//
// An idle stream costs one small goroutine and no buffers: on HTTP/1.1 the connection is
// taken over from net/http (hijacked) once the stream is open, so the request's goroutine,
// its grown stack and the server's connection buffers are released; a goroutine blocked in a
// one-byte Read notices the client leaving. Events are written by a goroutine started only
// while there is something to write, and keep-alive comments by a timer. Where the connection
// cannot be taken over (HTTP/2, a wrapper without Hijack) the request's goroutine holds the
// stream instead.
type stream struct {
	b       *Bridge
	id      string
	key     string // mcpgate:sse:{id}
	record  []byte // the key's value
	binding string
	user    string
	grant   *grants.Grant // the grant that opened the stream (identity for the backend)
	opened  time.Time
	reqID   string // request id of the GET that opened it (for the logs)

	ctx    context.Context // ends when the stream closes: cancels backend calls
	cancel context.CancelFunc

	sink  sink        // where events go; guarded by wmu
	wmu   sync.Mutex  // serialises writes to sink
	ping  *time.Timer // keep-alive: fires after KeepAlive without a write
	ended chan struct{}

	// Events waiting to be written (a slice: an idle stream holds no buffer).
	qmu         sync.Mutex
	queue       [][]byte
	queuedBytes int64
	writing     bool // a writer goroutine runs
	queueShut   bool // finalize took the queue: nothing more is queued
	// budget is the user's share, charged for every queued event until it is written (or
	// dropped); set when the stream is registered.
	budget *userStreams

	done      chan struct{} // closed by close()
	closeOnce sync.Once
	reason    atomic.Value // string: why close() was called

	// version is the MCP protocol version for backend requests: the client's requested
	// version once it sent initialize, the negotiated one once the backend answered.
	version atomic.Value // string

	mu      sync.Mutex
	jobs    []job // accepted, not yet dispatched (FIFO)
	pending int   // accepted and not finished (queued + in flight)
	running bool  // the dispatcher goroutine runs
}

// sink is the client's end of a stream.
type sink interface {
	// write sends events (complete, framed SSE events) and flushes them.
	write(p []byte, deadline time.Time) error
	// end finishes the response cleanly (best effort, by deadline) and releases the
	// connection, which makes the stream's owner notice.
	end(deadline time.Time)
}

var pingEvent = []byte(": ping\n\n")

// close ends the stream (idempotent): backend calls are cancelled, queued events are written
// (briefly), the response ends cleanly, and the stream's owner then cleans up.
func (s *stream) close(reason string) {
	s.closeOnce.Do(func() {
		s.reason.Store(reason)
		close(s.done)
		s.cancel()
		go s.finalize()
	})
}

// finalized reports whether finalize has run (the response is ended, or there was no sink
// yet). Checked under wmu, it tells whether a sink set now would be ended by finalize.
func (s *stream) finalized() bool {
	select {
	case <-s.ended:
		return true
	default:
		return false
	}
}

func (s *stream) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// finalize writes what is still queued and ends the response.
func (s *stream) finalize() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.ping != nil {
		s.ping.Stop()
	}
	deadline := time.Now().Add(time.Second)
	q := s.takeFinal()
	if len(q) > 0 && s.sink != nil {
		_ = s.sink.write(bytes.Join(q, nil), deadline)
	}
	s.release(q)
	if s.sink != nil {
		s.sink.end(deadline)
	}
	close(s.ended)
}

// send queues a complete SSE event for the client. A client too slow to keep the queue
// within bounds loses its stream (it reconnects; memory stays bounded).
func (s *stream) send(ev []byte) {
	if s.closed() {
		return
	}
	s.qmu.Lock()
	if s.queueShut || s.budget == nil {
		s.qmu.Unlock()
		return
	}
	n := int64(len(ev))
	if len(s.queue) >= s.b.cfg.MaxQueuedEvents || s.queuedBytes+n > s.b.cfg.MaxQueuedBytes {
		s.qmu.Unlock()
		s.b.metrics.dropped.WithLabelValues("slow_client").Inc()
		s.close("slow_client")
		return
	}
	if s.budget.queued.Add(n) > s.b.cfg.MaxQueuedBytesPerUser {
		s.budget.queued.Add(-n)
		s.qmu.Unlock()
		s.b.metrics.dropped.WithLabelValues("user_queue_limit").Inc()
		s.close("slow_client")
		return
	}
	s.queue = append(s.queue, ev)
	s.queuedBytes += n
	start := !s.writing
	s.writing = true
	s.qmu.Unlock()
	if start {
		go s.writeLoop()
	}
}

// takeFinal returns the queued events and empties the queue for good (finalize).
func (s *stream) takeFinal() [][]byte {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	q := s.queue
	s.queue, s.queuedBytes, s.queueShut = nil, 0, true
	return q
}

// release gives the bytes of written (or dropped) events back to the user's budget.
func (s *stream) release(q [][]byte) {
	var n int64
	for _, ev := range q {
		n += int64(len(ev))
	}
	if n > 0 && s.budget != nil {
		s.budget.queued.Add(-n)
	}
}

// writeLoop writes queued events until the queue is empty, then exits.
func (s *stream) writeLoop() {
	for {
		s.qmu.Lock()
		q := s.queue
		s.queue, s.queuedBytes = nil, 0
		if len(q) == 0 || s.closed() {
			s.writing = false
			if len(q) > 0 { // closing: finalize writes them
				s.queue, s.queuedBytes = q, 0
			}
			s.qmu.Unlock()
			return
		}
		s.qmu.Unlock()
		var p []byte
		if len(q) == 1 {
			p = q[0]
		} else {
			p = bytes.Join(q, nil)
		}
		s.wmu.Lock()
		err := s.sink.write(p, time.Now().Add(s.b.cfg.WriteTimeout))
		if err == nil {
			s.ping.Reset(s.b.cfg.KeepAlive)
		}
		s.wmu.Unlock()
		s.release(q)
		if err != nil {
			s.close("write_failed")
			return
		}
	}
}

// enqueue accepts a message for the backend in FIFO order. It reports false when the stream
// already has MaxPending messages unfinished (or is closed).
func (s *stream) enqueue(j job) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed() || s.b.closing.Load() || s.pending >= s.b.cfg.MaxPending {
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

// busy reports whether messages of s are queued or in flight.
func (s *stream) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending > 0
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
// stream holds no goroutine for it.
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
		opened: time.Now(), reqID: c.RequestID, done: make(chan struct{}), ended: make(chan struct{})}
	s.key = store.Key("sse", s.id)
	s.record = encodeRecord(b.cfg.ReplicaID, s.binding)
	// The stream's context is not the request's: the stream outlives the handler when the
	// connection is taken over, and ends (with everything it started) when the client leaves.
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(r.Context()))
	if reason := b.add(s); reason != "" {
		s.cancel()
		c.Outcome = reason
		b.metrics.rejected.WithLabelValues(reason).Inc()
		w.Header()["Retry-After"] = []string{"5"}
		writeRPCError(w, http.StatusServiceUnavailable, codeUnavailable, "Too many open SSE streams, retry later")
		return
	}
	sctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	err := b.cfg.Store.Set(sctx, s.key, s.record, b.keyTTL)
	cancel()
	if err != nil {
		c.Outcome = "store_unavailable"
		b.metrics.rejected.WithLabelValues("store_unavailable").Inc()
		s.close("store_unavailable")
		<-s.ended
		b.remove(s)
		w.Header()["Retry-After"] = []string{"1"}
		writeRPCError(w, http.StatusServiceUnavailable, codeUnavailable, "Service temporarily unavailable, retry shortly")
		return
	}
	c.Outcome = "sse_stream"
	h := w.Header()
	h["Content-Type"] = []string{"text/event-stream"}
	h["Cache-Control"] = []string{"no-cache, no-transform"}
	h["X-Accel-Buffering"] = []string{"no"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	first := []byte("event: endpoint\ndata: " + MessagePath + "?sessionId=" + s.id + "\n\n")
	b.log.Debug("sse stream opened", "sse_session", hashLabel(s.id), "request_id", c.RequestID)

	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 && r.ProtoMinor == 1 {
		if conn, brw, err := rc.Hijack(); err == nil {
			hs := &connSink{conn: conn}
			s.wmu.Lock()
			s.sink = hs
			s.ping = time.AfterFunc(b.cfg.KeepAlive, func() { s.send(pingEvent) })
			err := hs.start(h, first, time.Now().Add(b.cfg.WriteTimeout))
			if s.finalized() {
				// Closed while opening (e.g. its grant was just revoked): finalize ran before
				// there was a sink, so the response ends here.
				s.ping.Stop()
				hs.end(time.Now().Add(time.Second))
			}
			s.wmu.Unlock()
			if brw.Reader.Buffered() > 0 || err != nil {
				s.close("write_failed") // a pipelined request, or the client left already
			}
			go s.own(conn)
			return
		}
	}
	// Fallback: the request's goroutine holds the stream.
	s.wmu.Lock()
	s.sink = &responseSink{w: w, rc: rc}
	s.ping = time.AfterFunc(b.cfg.KeepAlive, func() { s.send(pingEvent) })
	w.WriteHeader(http.StatusOK)
	err = s.sink.write(first, time.Now().Add(b.cfg.WriteTimeout))
	if s.finalized() {
		s.ping.Stop() // closed while opening: the handler returns below
	}
	s.wmu.Unlock()
	if err != nil {
		s.close("write_failed")
	}
	select {
	case <-r.Context().Done():
		s.close("client_gone")
	case <-s.done:
	}
	<-s.ended
	b.remove(s)
}

// own waits for a taken-over connection to end (the client leaves, or close ended the
// response and released it), then cleans up.
func (s *stream) own(conn net.Conn) {
	var buf [1]byte
	// A client does not send on an event stream's connection: a few stray bytes are ignored,
	// a client that keeps sending is cut off.
	for stray := 0; stray < 4096; stray++ {
		if _, err := conn.Read(buf[:]); err != nil {
			break
		}
	}
	s.close("client_gone")
	<-s.ended
	s.b.remove(s)
}

// connSink writes a taken-over HTTP/1.1 connection: the response head once, then each batch
// of events as one chunk.
type connSink struct {
	conn net.Conn
}

func (c *connSink) start(h http.Header, first []byte, deadline time.Time) error {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&b)
	b.WriteString("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
	appendChunk(&b, first)
	_ = c.conn.SetWriteDeadline(deadline)
	_, err := c.conn.Write(b.Bytes())
	return err
}

func appendChunk(b *bytes.Buffer, p []byte) {
	b.WriteString(strconv.FormatInt(int64(len(p)), 16))
	b.WriteString("\r\n")
	b.Write(p)
	b.WriteString("\r\n")
}

func (c *connSink) write(p []byte, deadline time.Time) error {
	var b bytes.Buffer
	b.Grow(len(p) + 16)
	appendChunk(&b, p)
	_ = c.conn.SetWriteDeadline(deadline)
	_, err := c.conn.Write(b.Bytes())
	return err
}

func (c *connSink) end(deadline time.Time) {
	_ = c.conn.SetWriteDeadline(deadline)
	_, _ = c.conn.Write([]byte("0\r\n\r\n"))
	_ = c.conn.Close()
}

// responseSink writes through net/http (HTTP/2, or a writer that cannot be taken over).
type responseSink struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (r *responseSink) write(p []byte, deadline time.Time) error {
	_ = r.rc.SetWriteDeadline(deadline)
	if _, err := r.w.Write(p); err != nil {
		return err
	}
	if err := r.rc.Flush(); err != nil {
		return errors.Join(errors.New("flush"), err)
	}
	return nil
}

// end does nothing: the handler returns once the stream has ended, which ends the response.
func (r *responseSink) end(time.Time) {}

// add registers s within the limits; it returns the refusal reason or "". A stream whose grant
// was revoked moments ago (the revocation overtook the GET) is registered and closed at once.
func (b *Bridge) add(s *stream) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing.Load() {
		return "shutting_down"
	}
	if len(b.streams) >= b.cfg.MaxStreams {
		return "replica_stream_limit"
	}
	u := b.perUser[s.user]
	if u == nil {
		u = &userStreams{}
	}
	if u.n >= b.cfg.MaxStreamsPerUser {
		return "user_stream_limit"
	}
	b.handlers.Add(1) // under mu, so never concurrent with Shutdown's Wait from zero
	b.streams[s.id] = s
	u.n++
	b.perUser[s.user] = u
	s.budget = u
	b.byGrant[s.grant.ID] = append(b.byGrant[s.grant.ID], s)
	b.metrics.streams.Inc()
	if b.recentlyRevokedLocked(s.grant.ID, time.Now()) {
		s.close("grant_revoked")
	}
	return ""
}

// remove unregisters s (closed and ended) and deletes its key.
func (b *Bridge) remove(s *stream) {
	b.mu.Lock()
	if b.streams[s.id] == s {
		delete(b.streams, s.id)
		if u := b.perUser[s.user]; u != nil {
			if u.n--; u.n <= 0 {
				delete(b.perUser, s.user)
			}
		}
		if l := slices.DeleteFunc(b.byGrant[s.grant.ID], func(o *stream) bool { return o == s }); len(l) > 0 {
			b.byGrant[s.grant.ID] = l
		} else {
			delete(b.byGrant, s.grant.ID)
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
	// The chain's access log line for the GET is written when the stream opens; this one
	// says how it ended.
	b.log.LogAttrs(ctx, slog.LevelInfo, "sse stream closed", slog.String("request_id", s.reqID),
		slog.String("sse_session", hashLabel(s.id)), slog.String("user_oid", s.user), slog.String("reason", reason),
		slog.Float64("duration_s", time.Since(s.opened).Seconds()), slog.String("replica", b.cfg.ReplicaID))
	b.handlers.Done()
}

// lookup returns the local stream id, if this replica holds it.
func (b *Bridge) lookup(id string) *stream {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.streams[id]
}
