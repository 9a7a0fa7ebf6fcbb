package mcpproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
)

// Header names the gateway sets for the backend.
const (
	HeaderFunctionsKey = "X-Functions-Key"
	HeaderUserID       = "X-Mcpgate-User-Id"
	HeaderUserName     = "X-Mcpgate-User-Name"
	HeaderUsername     = "X-Mcpgate-Username"
	HeaderTenantID     = "X-Mcpgate-Tenant-Id"
	HeaderClientID     = "X-Mcpgate-Client-Id"
)

// errBackendUnauthorized: the backend refused the function key even after a refresh.
var errBackendUnauthorized = errors.New("mcpproxy: backend refused the function key")

// NewTransport returns the backend transport the proxy uses by default: no proxy from the
// environment, no compression, many idle connections per host (every request goes to one
// backend), and headerTimeout as the response-header timeout (→ 504). Wrap it for tracing.
func NewTransport(headerTimeout time.Duration) *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: headerTimeout,
		DisableCompression:    true,
	}
}

// forwarder is step 5 and 6 for Streamable HTTP: sanitise, add the key and identity, proxy.
type forwarder struct {
	p    *Proxy
	rp   *httputil.ReverseProxy
	keys KeySource
}

type stateKey struct{}

// fwdState travels in the outgoing request's context from serve to the proxy hooks.
type fwdState struct {
	call *Call
	key  string
	body []byte
}

func newForwarder(p *Proxy, backend *url.URL) *forwarder {
	f := &forwarder{p: p, keys: p.cfg.Keys}
	base := p.cfg.Transport
	if base == nil {
		base = NewTransport(p.cfg.BackendHeaderTimeout)
	}
	f.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			st, _ := pr.In.Context().Value(stateKey{}).(*fwdState)
			pr.SetURL(backend)
			if strings.Contains(pr.Out.URL.RawQuery, "code") {
				q := pr.Out.URL.Query()
				q.Del("code") // the Functions host would take a key from ?code= when no header is set
				pr.Out.URL.RawQuery = q.Encode()
			}
			if st == nil {
				SanitizeHeaders(pr.Out.Header)
				pr.SetXForwarded()
				return
			}
			p.BackendHeaders(pr.Out.Header, st.call.Grant, st.key)
			pr.SetXForwarded()
			if st.body != nil {
				body := st.body
				pr.Out.Body = io.NopCloser(bytes.NewReader(body))
				pr.Out.ContentLength = int64(len(body))
				pr.Out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			}
		},
		Transport: &retryTransport{base: base, f: f},
		// 0, not -1: ReverseProxy already flushes every write of a text/event-stream or
		// unknown-length response (flushInterval() in net/http/httputil); -1 would also flush
		// the headers of every JSON response separately, one extra syscall per call (~12% of
		// the gateway's CPU in the benchmark) for no benefit.
		FlushInterval:  0,
		ModifyResponse: f.modifyResponse,
		BufferPool:     newBufferPool(),
		ErrorHandler:   f.errorHandler,
		ErrorLog:       nil,
	}
	return f
}

// bufferPool reuses ReverseProxy's 32 KiB copy buffers (without it every response allocates
// and zeroes one: the largest allocation on the request path).
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte { return *b.p.Get().(*[]byte) }

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == 32<<10 {
		buf = buf[:cap(buf)]
		b.p.Put(&buf)
	}
}

// SanitizeHeaders removes from h everything a client must not pass to the backend: its
// credentials and cookies, a function key, identity headers the backend trusts, forwarding
// headers (the proxy sets its own) and Accept-Encoding (streams are never compressed).
func SanitizeHeaders(h http.Header) {
	for k := range h {
		if len(k) >= 2 && (k[0] == 'X' || k[0] == 'x') && (k[1] == '-') {
			lk := strings.ToLower(k)
			if strings.HasPrefix(lk, "x-mcpgate-") || strings.HasPrefix(lk, "x-forwarded-") ||
				strings.HasPrefix(lk, "x-ms-") || strings.HasPrefix(lk, "x-azure-functions-") ||
				lk == "x-functions-key" || lk == "x-real-ip" || lk == "x-arr-ssl" || lk == "x-client-ip" {
				delete(h, k)
			}
		}
	}
	delete(h, "Authorization")
	delete(h, "Proxy-Authorization")
	delete(h, "Cookie")
	delete(h, "Forwarded")
	delete(h, "Accept-Encoding")
}

// BackendHeaders sanitises h (SanitizeHeaders) and adds the function key and the identity
// headers of g (step 5 of the chain).
func (p *Proxy) BackendHeaders(h http.Header, g *grants.Grant, key string) {
	SanitizeHeaders(h)
	h[HeaderFunctionsKey] = []string{key}
	if g == nil {
		return
	}
	h[HeaderUserID] = []string{headerValue(g.User.ID())}
	h[HeaderClientID] = []string{headerValue(g.ClientID)}
	if g.User.Name != "" {
		h[HeaderUserName] = []string{headerValue(g.User.Name)}
	}
	if g.User.Username != "" {
		h[HeaderUsername] = []string{headerValue(g.User.Username)}
	}
	if g.User.TenantID != "" {
		h[HeaderTenantID] = []string{headerValue(g.User.TenantID)}
	}
}

// headerValue percent-encodes s when it holds anything but printable ASCII or holds '%'.
func headerValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hexd[c>>4])
			b.WriteByte(hexd[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// serve is the Streamable HTTP handler after the chain.
func (f *forwarder) serve(w http.ResponseWriter, r *http.Request, c *Call) {
	key, err := f.keys.Current(r.Context())
	if err != nil {
		c.Outcome = "no_function_key"
		f.p.metrics.backendErrors.WithLabelValues("no_key").Inc()
		w.Header()["Retry-After"] = []string{"5"}
		writeRPCError(w, http.StatusServiceUnavailable, codeUnavailable, "Service not ready, retry shortly")
		return
	}
	body, err := ReadBody(w, r, f.p.cfg.MaxBodyBytes, f.p.cfg.BodyReadTimeout)
	if err != nil {
		if errors.Is(err, ErrBodyTooLarge) {
			c.Outcome = "body_too_large"
			writeRPCError(w, http.StatusRequestEntityTooLarge, codeTooLarge, "Request body too large")
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.Outcome = "body_timeout"
			writeRPCError(w, http.StatusRequestTimeout, codeTimeout, "Request body not received in time")
			return
		}
		c.Outcome = "body_read_error"
		writeRPCError(w, http.StatusBadRequest, -32700, "Could not read the request body")
		return
	}
	c.Method, c.Tool = mcpMethod(body)
	w = withWriteProgress(w, f.p.cfg.WriteProgressTimeout)
	st := &fwdState{call: c, key: key, body: body}
	f.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
}

// modifyResponse hides the backend's authentication details and sets up streams.
func (f *forwarder) modifyResponse(resp *http.Response) error {
	h := resp.Header
	delete(h, "Www-Authenticate") // the backend's challenge is about the function key, not the client
	delete(h, "Set-Cookie")       // e.g. the Functions front end's affinity cookies: not for our origin
	delete(h, "Request-Context")  // Application Insights' appId of the function app
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusForbidden {
		// The host's or Azure front end's own error (an HTML page naming the site, a host
		// error text): the client gets the gateway's JSON-RPC error instead, never the
		// backend's details. An MCP server's JSON-RPC errors travel with 200 or 4xx and pass.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return &backendStatusError{status: resp.StatusCode}
	}
	if !isEventStream(h) {
		return nil
	}
	// (A stream's writes are bounded one by one by the progress writer: no overall deadline.)
	h["X-Accel-Buffering"] = []string{"no"}
	if ka := f.p.cfg.KeepAlive; ka > 0 {
		resp.Body = newKeepAliveBody(resp.Body, ka)
	}
	return nil
}

func isEventStream(h http.Header) bool {
	v := h["Content-Type"]
	return len(v) > 0 && len(v[0]) >= 17 && strings.EqualFold(v[0][:17], "text/event-stream")
}

// errorHandler answers a failed backend round trip without revealing the backend.
func (f *forwarder) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(stateKey{}).(*fwdState)
	outcome := func(s string) {
		if st != nil {
			st.call.Outcome = s
		}
	}
	var ne net.Error
	var bse *backendStatusError
	switch {
	case errors.As(err, &bse):
		outcome("backend_status_" + strconv.Itoa(bse.status))
		f.p.metrics.backendErrors.WithLabelValues("error_status").Inc()
		switch bse.status {
		case http.StatusServiceUnavailable:
			w.Header()["Retry-After"] = []string{"5"}
			writeRPCError(w, http.StatusServiceUnavailable, codeUnavailable, "Service unavailable: the MCP backend is not ready, retry shortly")
		case http.StatusGatewayTimeout:
			writeRPCError(w, http.StatusGatewayTimeout, codeTimeout, "Gateway timeout: the MCP backend did not answer in time")
		default:
			writeRPCError(w, http.StatusBadGateway, codeBadGateway, "Bad gateway: the MCP backend failed")
		}
	case errors.Is(err, errBackendUnauthorized):
		outcome("backend_unauthorized")
		f.p.metrics.backendErrors.WithLabelValues("unauthorized").Inc()
		writeRPCError(w, http.StatusBadGateway, codeBadGateway, "Bad gateway: the MCP backend refused the gateway")
	case r.Context().Err() != nil:
		outcome("client_gone")
		writeRPCError(w, http.StatusBadGateway, codeBadGateway, "Request canceled")
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		outcome("backend_timeout")
		f.p.metrics.backendErrors.WithLabelValues("timeout").Inc()
		writeRPCError(w, http.StatusGatewayTimeout, codeTimeout, "Gateway timeout: the MCP backend did not answer in time")
	default:
		outcome("backend_unreachable")
		f.p.metrics.backendErrors.WithLabelValues("unreachable").Inc()
		writeRPCError(w, http.StatusBadGateway, codeBadGateway, "Bad gateway: the MCP backend is unavailable")
	}
	if st != nil && !errors.Is(err, errBackendUnauthorized) && r.Context().Err() == nil {
		// The error may name the backend address: log it, never send it.
		f.p.log.LogAttrs(r.Context(), slog.LevelWarn, "backend request failed",
			slog.String("request_id", st.call.RequestID), slog.String("err", err.Error()))
	}
}

// backendStatusError is a backend answer replaced by the gateway's own error (a 5xx or 403).
type backendStatusError struct{ status int }

func (e *backendStatusError) Error() string {
	return "backend answered " + strconv.Itoa(e.status)
}

// retryTransport retries once with a refreshed function key when the backend answers 401.
type retryTransport struct {
	base http.RoundTripper
	f    *forwarder
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	st, _ := req.Context().Value(stateKey{}).(*fwdState)
	m := t.f.p.metrics
	if st == nil || (req.Body != nil && req.Body != http.NoBody && req.GetBody == nil) {
		m.keyRetries.WithLabelValues("error").Inc()
		return nil, errBackendUnauthorized
	}
	ctx := req.Context()
	rerr := t.f.keys.Refresh(ctx)
	key, kerr := t.f.keys.Current(ctx)
	if kerr != nil || key == st.key {
		if rerr != nil {
			m.keyRetries.WithLabelValues("error").Inc()
		} else {
			m.keyRetries.WithLabelValues("same_key").Inc()
		}
		return nil, errBackendUnauthorized
	}
	m.keyRetries.WithLabelValues("retried").Inc()
	retry := req.Clone(ctx)
	retry.Header[HeaderFunctionsKey] = []string{key}
	if req.GetBody != nil {
		b, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		retry.Body = b
	}
	resp, err = t.base.RoundTrip(retry)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		resp.Body.Close()
		return nil, errBackendUnauthorized
	}
	return resp, nil
}
