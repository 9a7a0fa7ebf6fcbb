package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// keysLB is the public address of a set of gateway replicas: a reverse proxy that sends each
// request to the next of its current targets (switchable while traffic flows, as a rolling
// deployment does). No keep-alive towards the replicas, so a replica that shuts down never
// drops a request sent on a connection it is closing.
type keysLB struct {
	URL     string
	targets atomic.Pointer[[]*url.URL]
	n       atomic.Uint64
}

func startKeysLB(t *testing.T) *keysLB {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb := &keysLB{URL: "http://" + ln.Addr().String()}
	lb.targets.Store(&[]*url.URL{})
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			ts := *lb.targets.Load()
			if len(ts) == 0 {
				return
			}
			r.SetURL(ts[lb.n.Add(1)%uint64(len(ts))])
			r.Out.Host = r.In.Host // the replicas check Host against the public URL
			r.Out.Header["X-Forwarded-For"] = nil
		},
		Transport:     &http.Transport{DisableKeepAlives: true},
		FlushInterval: -1,
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return lb
}

// route sends traffic to the given replicas from now on.
func (lb *keysLB) route(t *testing.T, gws ...*harness.Gateway) {
	t.Helper()
	ts := make([]*url.URL, len(gws))
	for i, g := range gws {
		u, err := url.Parse(g.URL)
		if err != nil {
			t.Fatal(err)
		}
		ts[i] = u
	}
	lb.targets.Store(&ts)
}

// startKeysReplica starts one gateway replica of a shared deployment: public URL, Redis,
// state directory (session ring, clients, function-key file), development login, and rate
// limits high enough for the load; args come last (a flag given twice: the last wins).
func startKeysReplica(t *testing.T, id, public, backend, key string, rds *harness.Redis, state string, args ...string) *harness.Gateway {
	t.Helper()
	g := harness.StartGateway(t, harness.GatewayOptions{BackendURL: backend, FunctionKey: key, RedisURL: rds.URL(), StateDir: state, Dev: true,
		Args: append([]string{"--public-url", public, "--replica-id", id, "--rate-limit-rps", "2000", "--rate-limit-burst", "4000"}, args...)})
	waitReady(t, g.URL)
	return g
}

// keysLoad runs tools/call (hello_mcp) through the public URL with a set of access tokens,
// counting successes and failures, until stopped.
type keysLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	tokens     []string
	failures   []string
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

const keysToolCall = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_mcp","arguments":{}}}`

func startKeysLoad(t *testing.T, public string, workers int, tokens ...string) *keysLoad {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &keysLoad{cancel: cancel, tokens: tokens}
	hc := newKeysClient()
	for w := range workers {
		l.wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				l.mu.Lock()
				tok := l.tokens[(w+i)%len(l.tokens)]
				l.mu.Unlock()
				if err := keysCall(hc, public, tok); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.failures) < 10 {
						l.failures = append(l.failures, err.Error())
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
				}
				time.Sleep(10 * time.Millisecond) // a steady load, not a CPU hog on a shared machine
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

// addToken puts another token into the rotation.
func (l *keysLoad) addToken(tok string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tokens = append(l.tokens, tok)
}

func (l *keysLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

// stopNoFailures stops the load and fails the test if any call failed during what.
func (l *keysLoad) stopNoFailures(t *testing.T, what string) {
	t.Helper()
	l.stop()
	t.Logf("%d calls during %s, %d failed", l.ok.Load(), what, l.failed.Load())
	if n := l.failed.Load(); n != 0 {
		t.Fatalf("%d calls failed during %s: %v", n, what, l.failures)
	}
}

// waitCalls waits (bounded) until n more calls have succeeded.
func (l *keysLoad) waitCalls(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	for l.ok.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("load stalled: %d ok, %d failed: %v", l.ok.Load(), l.failed.Load(), l.failures)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newKeysClient() *http.Client { return &http.Client{Timeout: 20 * time.Second} }

// keysCall sends one tools/call and checks its JSON-RPC result.
func keysCall(hc *http.Client, base, token string) error { return keysCallVia(hc, base, "", token) }

// keysCallVia is keysCall sent to base with the Host header host (one replica of the
// deployment whose public host is host); an empty host is base's.
func keysCallVia(hc *http.Client, base, host, token string) error {
	req, err := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(keysToolCall))
	if err != nil {
		return err
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	// The function app answers JSON; an SSE-framed answer carries the same JSON in data:.
	if i := bytes.Index(body, []byte("data: ")); i >= 0 {
		body = body[i+6:]
	}
	var msg struct {
		Result *struct {
			IsError bool `json:"isError"`
		} `json:"result"`
		Error any `json:"error"`
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&msg); err != nil || msg.Result == nil || msg.Result.IsError {
		return fmt.Errorf("not a tool result: %.200s", body)
	}
	return nil
}

// runMcpgate runs the mcpgate CLI (the same binary as the gateway) and returns stdout and
// stderr; it fails the test when the command fails.
func runMcpgate(t *testing.T, dir string, args ...string) (stdout, stderr string) {
	t.Helper()
	out, errOut, err := runMcpgateE(t, dir, args...)
	if err != nil {
		t.Fatalf("mcpgate %s: %v\nstderr:\n%s\nstdout:\n%s", strings.Join(args, " "), err, errOut, out)
	}
	return out, errOut
}

func runMcpgateE(t *testing.T, dir string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin := harness.BuildBinary(t, "github.com/mcpgate/mcpgate/gateway/cmd/mcpgate")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// keyStatus probes the function app's ping with a key: the status code.
func keyStatus(t *testing.T, funcURL, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, funcURL+"/", nil)
	req.Header.Set("x-functions-key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("not JSON (%v): %.500s", err, s)
	}
}

// waitKeyStatus waits (bounded) until the function app answers want to key: the standalone
// function app, like the Functions host, trusts its loaded keys for a moment (about a second)
// before it sees a deleted key gone.
func waitKeyStatus(t *testing.T, funcURL, key string, want int) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := keyStatus(t, funcURL, key)
		if got == want {
			return true
		}
		if time.Now().After(deadline) {
			t.Logf("function app answers %d to the key, want %d", got, want)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
