// Command mcpgate-ssebench measures the legacy SSE bridge (see docs/sse.md and BENCHMARKS.md):
// it starts redis-server, the function app and two `mcpgate serve` replicas sharing Redis,
// then measures
//
//   - the SSE round trip (POST /mcp/message → the answer's event on the stream) when the POST
//     lands on the replica holding the stream and when it lands on the other one, next to the
//     Streamable HTTP round trip (POST /mcp) through the same gateway;
//   - the memory (RSS) of a fresh replica holding N idle SSE streams (one user each).
//
// Access tokens are minted straight into the grant store with the replicas' session-key ring
// (a benchmark shortcut: whoever can read the ring file can do this anyway).
//
//	go run ./gateway/cmd/mcpgate-ssebench [-n 2000] [-c 1,16] [-idle 10000] [-bin-dir DIR]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "mcpgate-ssebench:", err)
		os.Exit(1)
	}
}

type bench struct {
	work     string
	bins     string
	procs    []*exec.Cmd
	logs     map[string]*bytes.Buffer
	mu       sync.Mutex
	redisURL string
	public   string // public URL shared by the replicas (replica a's address)
	key      string
	fa       string
	client   *http.Client
}

func run(ctx context.Context) error {
	n := flag.Int("n", 2000, "round trips per case and concurrency level")
	concs := flag.String("c", "1,16", "concurrency levels (streams sending at once)")
	idle := flag.Int("idle", 10_000, "idle SSE streams held by one replica for the memory measurement (0: skip)")
	settle := flag.Duration("settle", 130*time.Second, "how long the idle streams stay open before the second measurement (the Go runtime collects garbage and shrinks idle stacks at least every 2 minutes)")
	binDir := flag.String("bin-dir", "", "directory holding handler and mcpgate (default: build them)")
	repo := flag.String("repo", ".", "repository root (for building)")
	flag.Parse()
	var levels []int
	for s := range strings.SplitSeq(*concs, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || c < 1 {
			return fmt.Errorf("bad -c %q", *concs)
		}
		levels = append(levels, c)
	}
	raiseFileLimit()
	work, err := os.MkdirTemp("", "mcpgate-ssebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &bench{work: work, bins: *binDir, logs: map[string]*bytes.Buffer{},
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}}}
	defer b.stopAll()
	if err := b.build(*repo); err != nil {
		return err
	}
	if err := b.startBackends(ctx); err != nil {
		return err
	}
	a, err := b.startGateway(ctx, "a")
	if err != nil {
		return err
	}
	bb, err := b.startGateway(ctx, "b")
	if err != nil {
		return err
	}
	tokens, err := b.mint(ctx, max(slices.Max(levels), 1), "rt")
	if err != nil {
		return err
	}

	fmt.Printf("SSE round trip: tools/call hello_mcp, %d calls per row, sequential per stream\n\n", *n)
	fmt.Println("| path | concurrency | p50 ms | p99 ms | calls/s |")
	fmt.Println("|---|---|---|---|---|")
	for _, c := range levels {
		for _, tc := range []struct {
			name     string
			post     string // where POSTs go
			sse      bool
			streamTo string
		}{
			{"Streamable HTTP POST /mcp (reference)", a.url, false, ""},
			{"SSE, POST to the holder replica", a.url, true, a.url},
			{"SSE, POST to the other replica (Redis pub/sub)", bb.url, true, a.url},
		} {
			lat, rate, err := b.roundTrips(ctx, tc.streamTo, tc.post, tc.sse, tokens[:c], *n)
			if err != nil {
				return fmt.Errorf("%s: %w\n%s", tc.name, err, b.output())
			}
			fmt.Printf("| %s | %d | %.2f | %.2f | %.0f |\n", tc.name, c, ms(pct(lat, 50)), ms(pct(lat, 99)), rate)
		}
	}
	if *idle > 0 {
		if err := b.idleMemory(ctx, *idle, *settle); err != nil {
			return fmt.Errorf("idle streams: %w\n%s", err, b.output())
		}
	}
	return nil
}

func (b *bench) build(repo string) error {
	if b.bins != "" {
		return nil
	}
	b.bins = filepath.Join(b.work, "bin")
	for pkg, out := range map[string]string{"./functionapp/cmd/handler": "handler", "./gateway/cmd/mcpgate": "mcpgate"} {
		fmt.Fprintf(os.Stderr, "building %s\n", pkg)
		cmd := exec.Command("go", "build", "-o", filepath.Join(b.bins, out), pkg)
		cmd.Dir, cmd.Stderr = repo, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	return nil
}

func (b *bench) start(name, bin string, args, env []string) (*exec.Cmd, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	buf := &bytes.Buffer{}
	b.mu.Lock()
	b.logs[name] = buf
	b.mu.Unlock()
	cmd.Stdout, cmd.Stderr = lockedWriter{b, buf}, lockedWriter{b, buf}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	b.procs = append(b.procs, cmd)
	return cmd, nil
}

type lockedWriter struct {
	b   *bench
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	if w.buf.Len() > 1<<20 {
		w.buf.Reset()
	}
	return w.buf.Write(p)
}

func (b *bench) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s strings.Builder
	for name, buf := range b.logs {
		out := buf.String()
		if len(out) > 3000 {
			out = out[len(out)-3000:]
		}
		fmt.Fprintf(&s, "--- %s ---\n%s\n", name, out)
	}
	return s.String()
}

func (b *bench) stopAll() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		p := b.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

func (b *bench) startBackends(ctx context.Context) error {
	redisPort := freePort()
	b.redisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", redisPort)
	if _, err := b.start("redis", "redis-server", []string{"--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "warning", "--maxclients", "20000"}, nil); err != nil {
		return err
	}
	kb := make([]byte, 40)
	_, _ = rand.Read(kb)
	b.key = base64.URLEncoding.EncodeToString(kb)
	secrets := filepath.Join(b.work, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return err
	}
	doc := fmt.Sprintf(`{"masterKey":{"name":"master","value":%q,"encrypted":false},"functionKeys":[{"name":"gateway","value":%q,"encrypted":false}],"systemKeys":[]}`, b.key+"m", b.key)
	if err := os.WriteFile(filepath.Join(secrets, "host.json"), []byte(doc), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.work, "function-key"), []byte(b.key+"\n"), 0o600); err != nil {
		return err
	}
	faPort := freePort()
	b.fa = fmt.Sprintf("http://127.0.0.1:%d", faPort)
	if _, err := b.start("functionapp", filepath.Join(b.bins, "handler"), nil, []string{
		"FUNCTIONAPP_LISTEN=127.0.0.1:" + strconv.Itoa(faPort), "FUNCTIONAPP_SECRETS_DIR=" + secrets,
		"SNIPPETS_DIR=" + filepath.Join(b.work, "snippets"), "FUNCTIONS_CUSTOMHANDLER_PORT="}); err != nil {
		return err
	}
	return waitReady(ctx, b.fa+"/", "")
}

type gateway struct {
	url, metrics string
	cmd          *exec.Cmd
}

// startGateway starts one replica; the first one's address becomes the shared public URL.
func (b *bench) startGateway(ctx context.Context, id string) (*gateway, error) {
	port, mport := freePort(), freePort()
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	if b.public == "" {
		b.public = u
	}
	cmd, err := b.start("mcpgate-"+id, filepath.Join(b.bins, "mcpgate"), []string{"serve",
		"--listen", "127.0.0.1:" + strconv.Itoa(port), "--public-url", b.public, "--metrics-listen", "127.0.0.1:" + strconv.Itoa(mport),
		"--backend-url", b.fa, "--function-key-file", filepath.Join(b.work, "function-key"), "--redis-url", b.redisURL,
		"--session-keys-file", filepath.Join(b.work, "session-keys.json"), "--clients-store", filepath.Join(b.work, "clients"),
		"--replica-id", id, "--rate-limit-rps", "1000000", "--rate-limit-burst", "1000000", "--log-level", "warn", "--dev"}, nil)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, u+"/readyz", b.hostHeader()); err != nil {
		return nil, err
	}
	return &gateway{url: u, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", mport), cmd: cmd}, nil
}

func (b *bench) hostHeader() string { return strings.TrimPrefix(b.public, "http://") }

// mint issues n grants for distinct synthetic users and returns their access tokens.
func (b *bench) mint(ctx context.Context, n int, prefix string) ([]string, error) {
	doc, err := os.ReadFile(filepath.Join(b.work, "session-keys.json"))
	if err != nil {
		return nil, fmt.Errorf("read session-key ring: %w", err)
	}
	ring, err := session.ParseRing(doc)
	if err != nil {
		return nil, err
	}
	st, err := store.NewRedis(ctx, store.RedisOptions{URL: b.redisURL})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	m := grants.New(st, session.NewStaticKeeper(ring), grants.Options{})
	out := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	sem := make(chan struct{}, 16)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			user := fmt.Sprintf("%s-user-%d", prefix, i)
			ts, err := m.Issue(ctx, grants.Grant{ClientID: "mcpgate-ssebench", Resource: b.public, Scope: "mcp:tools",
				User: identity.User{Subject: user, ObjectID: user, Name: user}}, identity.Tokens{AccessToken: "bench-upstream"})
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			out[i] = ts.AccessToken
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return nil, fmt.Errorf("mint: %w", err)
	default:
	}
	return out, nil
}

// stream is one open SSE stream read by a goroutine.
type stream struct {
	endpoint string
	events   chan []byte
	body     io.ReadCloser
	cancel   context.CancelFunc
}

func (b *bench) open(ctx context.Context, base, token string, read bool) (*stream, error) {
	sctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, base+"/mcp/sse", nil)
	req.Host = b.hostHeader()
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := b.client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET /mcp/sse: %d %s", resp.StatusCode, body)
	}
	br := bufio.NewReader(resp.Body)
	s := &stream{body: resp.Body, cancel: cancel, events: make(chan []byte, 64)}
	ev, err := readEvent(br)
	if err != nil {
		s.close()
		return nil, err
	}
	s.endpoint = string(ev)
	if read {
		go func() {
			defer close(s.events)
			for {
				ev, err := readEvent(br)
				if err != nil {
					return
				}
				s.events <- ev
			}
		}()
	}
	return s, nil
}

func (s *stream) close() {
	s.cancel()
	_ = s.body.Close()
}

// readEvent returns the data of the next event (comments skipped).
func readEvent(br *bufio.Reader) ([]byte, error) {
	var data []byte
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if data != nil {
				return data, nil
			}
		case bytes.HasPrefix(line, []byte("data: ")):
			data = append(data, line[6:]...)
		}
	}
}

const call = `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"hello_mcp","arguments":{}}}`

// roundTrips runs n calls spread over len(tokens) concurrent streams (or Streamable HTTP
// clients) and returns each call's latency and the overall rate.
func (b *bench) roundTrips(ctx context.Context, streamAt, postTo string, sse bool, tokens []string, n int) ([]time.Duration, float64, error) {
	c := len(tokens)
	per := max(n/c, 1)
	lat := make([][]time.Duration, c)
	errs := make(chan error, c)
	var wg sync.WaitGroup
	ready := make(chan struct{})
	var opened sync.WaitGroup
	opened.Add(c)
	for w := range c {
		wg.Go(func() {
			var s *stream
			if sse {
				var err error
				if s, err = b.open(ctx, streamAt, tokens[w], true); err != nil {
					opened.Done()
					errs <- err
					return
				}
				defer s.close()
			}
			opened.Done()
			<-ready
			warm := per / 10
			for i := range per + warm {
				body := fmt.Sprintf(call, i+1)
				t0 := time.Now()
				if sse {
					if err := b.post(ctx, postTo+s.endpoint, tokens[w], body, http.StatusAccepted, nil); err != nil {
						errs <- err
						return
					}
					ev, ok := <-s.events
					if !ok || !bytes.Contains(ev, []byte(`"id":`+strconv.Itoa(i+1)+`,`)) {
						errs <- fmt.Errorf("stream: unexpected event %q", ev)
						return
					}
				} else {
					var out []byte
					if err := b.post(ctx, postTo+"/mcp", tokens[w], body, http.StatusOK, &out); err != nil {
						errs <- err
						return
					}
				}
				if i >= warm {
					lat[w] = append(lat[w], time.Since(t0))
				}
			}
		})
	}
	opened.Wait()
	start := time.Now()
	close(ready)
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return nil, 0, err
	default:
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	return all, float64(len(all)) / elapsed.Seconds(), nil
}

func (b *bench) post(ctx context.Context, u, token, body string, want int, out *[]byte) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	req.Host = b.hostHeader()
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: %d %.300s", u, resp.StatusCode, data)
	}
	if out != nil {
		*out = data
	}
	return nil
}

// idleMemory starts a fresh replica, opens n idle streams on it (one user each) and reports
// its RSS before and after.
func (b *bench) idleMemory(ctx context.Context, n int, settle time.Duration) error {
	g, err := b.startGateway(ctx, "idle")
	if err != nil {
		return err
	}
	tokens, err := b.mint(ctx, n, "idle")
	if err != nil {
		return err
	}
	// Warm the replica up (pools, caches) with a few streams, then take the baseline.
	for i := range 10 {
		s, err := b.open(ctx, g.url, tokens[i], false)
		if err != nil {
			return err
		}
		s.close()
	}
	time.Sleep(time.Second)
	before := rss(g.cmd.Process.Pid)
	streams := make([]*stream, n)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	t0 := time.Now()
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s, err := b.open(ctx, g.url, tokens[i], false)
			if err != nil {
				mu.Lock()
				firstErr = cmp(firstErr, err)
				mu.Unlock()
				return
			}
			streams[i] = s
		})
	}
	wg.Wait()
	openTime := time.Since(t0)
	defer func() {
		for _, s := range streams {
			if s != nil {
				s.close()
			}
		}
	}()
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("\nIdle SSE streams on one replica (fresh process, one user per stream; opened in %.1f s)\n\n", openTime.Seconds())
	fmt.Printf("| streams | when | RSS | per stream over the %.1f MiB baseline | Go heap in use | goroutine stacks | goroutines |\n", mib(before))
	fmt.Println("|---|---|---|---|---|---|---|")
	report := func(when string) {
		after := rss(g.cmd.Process.Pid)
		m := b.metrics(g)
		fmt.Printf("| %.0f | %s | %.1f MiB | %.1f KiB | %.1f MiB | %.1f MiB | %d |\n", m["mcpgate_sse_streams"], when, mib(after),
			float64(after-before)/1024/float64(n), mib(int64(m["go_memstats_heap_inuse_bytes"])),
			mib(int64(m["go_memstats_stack_inuse_bytes"])), int(m["go_goroutines"]))
	}
	time.Sleep(2 * time.Second)
	report("2 s after opening")
	if settle > 0 {
		select {
		case <-time.After(settle):
		case <-ctx.Done():
			return ctx.Err()
		}
		report(fmt.Sprintf("%s later", settle))
	}
	fmt.Printf("\npeak RSS %.1f MiB\n", mib(procStatus(g.cmd.Process.Pid, "VmHWM:")))
	return nil
}

// metrics reads the unlabelled samples of a replica's /metrics.
func (b *bench) metrics(g *gateway) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get(g.metrics)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			v, _ := strconv.ParseFloat(f[1], 64)
			out[f[0]] = v
		}
	}
	return out
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func rss(pid int) int64 { return procStatus(pid, "VmRSS:") }

// procStatus reads a "kB" field of /proc/pid/status, in bytes.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(line)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v * 1024
			}
		}
	}
	return 0
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func waitReady(ctx context.Context, u, host string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("not ready: " + u)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// raiseFileLimit lifts the soft open-files limit to the hard one (children inherit it): ten
// thousand streams need ten thousand sockets on each side.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
