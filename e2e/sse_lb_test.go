package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// roundRobin is a small load balancer: every request goes to the next target (no stickiness;
// stream-opening GETs to /mcp/sse rotate on their own counter so streams spread evenly). A
// target that refuses connections is skipped (the request never reached it, so retrying on
// the next one is safe). Responses are streamed and flushed as they arrive.
type roundRobin struct {
	targets []string
	next    atomic.Uint64
	nextSSE atomic.Uint64
	srv     *http.Server
	tr      *http.Transport
}

func startRoundRobin(t *testing.T, addr string, targets ...string) *roundRobin {
	t.Helper()
	lb := &roundRobin{targets: targets, tr: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	lb.srv = &http.Server{Handler: lb, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = lb.srv.Serve(ln) }()
	t.Cleanup(func() { _ = lb.srv.Close(); lb.tr.CloseIdleConnections() })
	return lb
}

func (lb *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, "lb: read body", http.StatusBadRequest)
		return
	}
	ctr := &lb.next
	if r.Method == http.MethodGet && r.URL.Path == "/mcp/sse" {
		ctr = &lb.nextSSE
	}
	start := ctr.Add(1)
	for i := range uint64(len(lb.targets)) {
		target := lb.targets[(start+i)%uint64(len(lb.targets))]
		out, _ := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
		out.Header = r.Header.Clone()
		out.Host = r.Host
		resp, err := lb.tr.RoundTrip(out)
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			continue // down: try the next target
		}
		if err != nil {
			http.Error(w, "lb: upstream failed", http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	}
	http.Error(w, "lb: no upstream", http.StatusBadGateway)
}

// metricValue sums the samples of a Prometheus metric whose labels contain match.
func metricValue(t *testing.T, metricsURL, name, match string) float64 {
	t.Helper()
	resp, err := http.Get(metricsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') || !strings.Contains(line, match) {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

// sseHolders counts the live stream keys per holder replica.
func sseHolders(t *testing.T, r *harness.Redis) map[string]int {
	t.Helper()
	port := strconv.Itoa(r.Port)
	out, err := exec.Command("redis-cli", "-p", port, "--scan", "--pattern", "mcpgate:sse:*").Output()
	if err != nil {
		t.Fatalf("redis-cli: %v", err)
	}
	holders := map[string]int{}
	for _, k := range strings.Fields(string(out)) {
		v, _ := exec.Command("redis-cli", "-p", port, "GET", k).Output()
		var rec struct {
			R string `json:"r"`
		}
		if json.Unmarshal(bytes.TrimSpace(v), &rec) == nil && rec.R != "" {
			holders[rec.R]++
		}
	}
	return holders
}

// replicaPair is two gateway replicas (ids a and b) sharing Redis and state behind a
// round-robin load balancer, in front of two function apps behind another one.
type replicaPair struct {
	rds    *harness.Redis
	public string
	gw     map[string]*harness.Gateway
	tok    harness.DevTokens
}

func startReplicaPair(t *testing.T) *replicaPair {
	t.Helper()
	rds := harness.StartRedis(t)
	snippets := t.TempDir()
	fa1 := harness.StartFunctionApp(t, harness.FunctionAppOptions{SnippetsDir: snippets})
	fa2 := harness.StartFunctionApp(t, harness.FunctionAppOptions{SnippetsDir: snippets, SecretsDir: fa1.SecretsDir})
	faAddr := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	startRoundRobin(t, faAddr, fa1.URL, fa2.URL)

	lbAddr := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	public := "http://" + lbAddr
	state := t.TempDir()
	gw := map[string]*harness.Gateway{}
	for _, id := range []string{"a", "b"} {
		gw[id] = harness.StartGateway(t, harness.GatewayOptions{BackendURL: "http://" + faAddr, FunctionKey: fa1.Key,
			RedisURL: rds.URL(), StateDir: state, Dev: true,
			Args: []string{"--public-url", public, "--replica-id", id, "--rate-limit-rps", "1000", "--rate-limit-burst", "2000"}})
		waitReady(t, gw[id].URL)
	}
	startRoundRobin(t, lbAddr, gw["a"].URL, gw["b"].URL)
	tok := harness.DevLogin(t, public, harness.DevLoginOptions{Name: "Lb Tester", Via: gw["a"].URL})
	return &replicaPair{rds: rds, public: public, gw: gw, tok: tok}
}

func TestSSEReplicasBehindLoadBalancer(t *testing.T) {
	p := startReplicaPair(t)
	rds, public, gw, tok := p.rds, p.public, p.gw, p.tok
	ctx := t.Context()
	const nSSE, nStreamable, callsEach = 6, 2, 40
	sse := make([]*mcp.ClientSession, nSSE)
	for i := range sse {
		cs, err := sseConnect(ctx, t, public+"/mcp/sse", tok.Access, nil)
		if err != nil {
			t.Fatalf("SSE session %d: %v", i, err)
		}
		sse[i] = cs
	}
	streamable := make([]*mcp.ClientSession, nStreamable)
	for i := range streamable {
		cs, err := streamableConnect(ctx, t, public+"/mcp", tok.Access)
		if err != nil {
			t.Fatalf("streamable session %d: %v", i, err)
		}
		streamable[i] = cs
	}
	if h := sseHolders(t, rds); h["a"] != nSSE/2 || h["b"] != nSSE/2 {
		t.Fatalf("stream holders %v, want %d on each replica", h, nSSE/2)
	}

	// A few hundred calls, every one must succeed: SSE messages land on either replica.
	var wg sync.WaitGroup
	errs := make(chan error, (nSSE+nStreamable)*callsEach)
	for i, cs := range append(append([]*mcp.ClientSession{}, sse...), streamable...) {
		wg.Go(func() {
			for j := range callsEach {
				name := fmt.Sprintf("lb-%d-%d", i, j)
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "save_snippet", Arguments: map[string]any{"snippetname": name, "snippet": name}})
				if err != nil || res.IsError {
					errs <- fmt.Errorf("session %d call %d save: %v %v", i, j, err, res)
					return
				}
				res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_snippet", Arguments: map[string]any{"snippetname": name}})
				if err != nil || res.IsError || toolText(res) != name {
					errs <- fmt.Errorf("session %d call %d get: %v %v", i, j, err, res)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, id := range []string{"a", "b"} {
		if f, r := metricValue(t, gw[id].Metrics, "mcpgate_sse_messages_total", `route="forwarded"`),
			metricValue(t, gw[id].Metrics, "mcpgate_sse_messages_total", `route="received"`); f == 0 || r == 0 {
			t.Fatalf("replica %s forwarded %v and received %v messages: the cross-replica path was not used", id, f, r)
		}
	}

	// Stop replica a. Streams on b are unaffected; streams on a end, their calls fail at once
	// with an error (no hang), and a reconnect lands on b.
	if err := gw["a"].Stop(); err != nil {
		t.Logf("replica a exit: %v", err)
	}
	var ok, failed []int
	for i, cs := range sse {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: "hello_mcp"})
		cancel()
		switch {
		case err == nil:
			ok = append(ok, i)
		case errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("session %d hung after its replica stopped", i)
		default:
			failed = append(failed, i)
		}
	}
	if len(ok) != nSSE/2 || len(failed) != nSSE/2 {
		t.Fatalf("after stopping a: sessions %v worked, %v failed; want %d each", ok, failed, nSSE/2)
	}
	for _, i := range failed {
		cs, err := sseConnect(ctx, t, public+"/mcp/sse", tok.Access, nil)
		if err != nil {
			t.Fatalf("reconnect %d: %v", i, err)
		}
		if txt, _ := callTool(t, cs, "hello_mcp", nil); txt != "Hello I am MCPTool!" {
			t.Fatalf("after reconnect: %q", txt)
		}
	}
	for i, cs := range streamable {
		if txt, _ := callTool(t, cs, "hello_mcp", nil); txt != "Hello I am MCPTool!" {
			t.Fatalf("streamable %d after stop: %q", i, txt)
		}
	}
	if h := sseHolders(t, rds); h["a"] != 0 {
		t.Fatalf("replica a left stream keys behind: %v", h)
	}
}

// TestSSEReplicaCrash: a replica dies (SIGKILL, no cleanup). Its clients get an error at once
// and reconnect through the load balancer; a POST for one of its sessions through the other
// replica finds the key but no subscriber: 404, nothing hangs.
func TestSSEReplicaCrash(t *testing.T) {
	p := startReplicaPair(t)
	ctx := t.Context()
	var onA *mcp.ClientSession
	var endpointA string
	for range 2 { // the LB alternates stream GETs: one lands on a, one on b
		before := sseHolders(t, p.rds)["a"]
		cs, err := sseConnect(ctx, t, p.public+"/mcp/sse", p.tok.Access, nil)
		if err != nil {
			t.Fatal(err)
		}
		if sseHolders(t, p.rds)["a"] > before {
			onA = cs
		}
	}
	if onA == nil {
		t.Fatal("no session on replica a")
	}
	endpointA = openRawStreamOn(t, p.gw["a"].URL, p.public, p.tok.Access)
	p.gw["a"].Kill()

	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := onA.CallTool(cctx, &mcp.CallToolParams{Name: "hello_mcp"}); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call on a crashed replica's session: %v, want a prompt error", err)
	}
	req, _ := http.NewRequestWithContext(cctx, http.MethodPost, p.gw["b"].URL+endpointA, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Host = strings.TrimPrefix(p.public, "http://")
	req.Header.Set("Authorization", "Bearer "+p.tok.Access)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || sseHolders(t, p.rds)["a"] == 0 {
		t.Fatalf("POST for a crashed holder's session via b: %d (holders %v), want 404 with the key still there", resp.StatusCode, sseHolders(t, p.rds))
	}
	cs, err := sseConnect(ctx, t, p.public+"/mcp/sse", p.tok.Access, nil)
	if err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	if txt, _ := callTool(t, cs, "hello_mcp", nil); txt != "Hello I am MCPTool!" {
		t.Fatalf("after reconnect: %q", txt)
	}
}
