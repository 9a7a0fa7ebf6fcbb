package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// sseBench is one run of `mcpgate-bench sse`: the stack and the replicas' shared public URL.
type sseBench struct {
	st     *stack
	be     *backends
	bins   string
	public string // public URL shared by the replicas (replica a's address)
	client *http.Client
}

// runSSE measures the legacy SSE bridge: the round trip through the replica holding the
// stream and through another one, and the memory of idle streams.
func runSSE(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sse", flag.ExitOnError)
	n := fs.Int("n", 2000, "round trips per case and concurrency level")
	concs := fs.String("c", "1,16", "concurrency levels (streams sending at once)")
	idle := fs.Int("idle", 10_000, "idle SSE streams held by one replica for the memory measurement (0: skip)")
	settle := fs.Duration("settle", 130*time.Second, "how long the idle streams stay open before the second measurement (the Go runtime collects garbage and shrinks idle stacks at least every 2 minutes)")
	binDir := fs.String("bin-dir", "", "directory holding handler and mcpgate (default: build them as shipped into a temp dir)")
	repo := fs.String("repo", ".", "repository root (for building)")
	_ = fs.Parse(args)
	levels, err := parseLevels(*concs)
	if err != nil {
		return err
	}
	raiseFileLimit()
	st, err := newStack("mcpgate-bench-sse-", *repo, binDir)
	if err != nil {
		return err
	}
	defer st.close()
	st.grace = 10 * time.Second // a replica holding thousands of streams may take a while to shut down
	be, err := st.startBackends(*binDir, "--maxclients", "20000")
	if err != nil {
		return err
	}
	if err := waitReady(ctx, be.faURL+"/", ""); err != nil {
		return fmt.Errorf("function app: %w\n%s", err, st.output())
	}
	b := &sseBench{st: st, be: be, bins: *binDir,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}}}
	a, err := b.startGateway(ctx, "a")
	if err != nil {
		return err
	}
	other, err := b.startGateway(ctx, "b")
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
			{"SSE, POST to the other replica (Redis pub/sub)", other.url, true, a.url},
		} {
			lat, rate, err := b.roundTrips(ctx, tc.streamTo, tc.post, tc.sse, tokens[:c], *n)
			if err != nil {
				return fmt.Errorf("%s: %w\n%s", tc.name, err, st.output())
			}
			fmt.Printf("| %s | %d | %.2f | %.2f | %.0f |\n", tc.name, c, millis(percentile(lat, 50)), millis(percentile(lat, 99)), rate)
		}
	}
	if *idle > 0 {
		if err := b.idleMemory(ctx, *idle, *settle); err != nil {
			return fmt.Errorf("idle streams: %w\n%s", err, st.output())
		}
	}
	return nil
}

// replica is one running `mcpgate serve`.
type replica struct {
	url, metrics string
	pid          int
}

// startGateway starts one replica; the first one's address becomes the shared public URL.
func (b *sseBench) startGateway(ctx context.Context, id string) (*replica, error) {
	port, mport := freePort(), freePort()
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	if b.public == "" {
		b.public = u
	}
	pid, err := b.st.start("mcpgate-"+id, filepath.Join(b.bins, "mcpgate"),
		append(b.st.serveArgs(b.be, port, mport, b.public), "--replica-id", id, "--log-level", "warn"), nil)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, u+"/readyz", b.hostHeader()); err != nil {
		return nil, fmt.Errorf("replica %s: %w\n%s", id, err, b.st.output())
	}
	return &replica{url: u, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", mport), pid: pid}, nil
}

func (b *sseBench) hostHeader() string { return strings.TrimPrefix(b.public, "http://") }

// mint issues n grants for distinct synthetic users and returns their access tokens.
func (b *sseBench) mint(ctx context.Context, n int, prefix string) ([]string, error) {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("%s-user-%d", prefix, i)
	}
	return mintMany(ctx, b.be.redisURL, b.st.ringFile(), b.public, "mcpgate-bench", users)
}

// stream is one open SSE stream read by a goroutine.
type stream struct {
	endpoint string
	events   chan []byte
	body     io.ReadCloser
	cancel   context.CancelFunc
}

func (b *sseBench) open(ctx context.Context, base, token string, read bool) (*stream, error) {
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

const sseCall = `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"hello_mcp","arguments":{}}}`

// roundTrips runs n calls spread over len(tokens) concurrent streams (or Streamable HTTP
// clients) and returns each call's latency, sorted, and the overall rate.
func (b *sseBench) roundTrips(ctx context.Context, streamAt, postTo string, sse bool, tokens []string, n int) ([]time.Duration, float64, error) {
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
				body := fmt.Sprintf(sseCall, i+1)
				t0 := time.Now()
				if sse {
					if err := b.post(ctx, postTo+s.endpoint, tokens[w], body, http.StatusAccepted); err != nil {
						errs <- err
						return
					}
					ev, ok := <-s.events
					if !ok || !bytes.Contains(ev, []byte(`"id":`+strconv.Itoa(i+1)+`,`)) {
						errs <- fmt.Errorf("stream: unexpected event %q", ev)
						return
					}
				} else if err := b.post(ctx, postTo+"/mcp", tokens[w], body, http.StatusOK); err != nil {
					errs <- err
					return
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

// post sends body to u and reads the whole answer, which must have status want.
func (b *sseBench) post(ctx context.Context, u, token, body string, want int) error {
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
	return nil
}

// idleMemory starts a fresh replica, opens n idle streams on it (one user each) and reports
// its RSS before and after.
func (b *sseBench) idleMemory(ctx context.Context, n int, settle time.Duration) error {
	g, err := b.startGateway(ctx, "idle")
	if err != nil {
		return err
	}
	tokens, err := b.mint(ctx, n, "idle")
	if err != nil {
		return err
	}
	// Warm the replica up (pools, caches) with a few streams, then take the baseline.
	for i := range min(10, n) {
		s, err := b.open(ctx, g.url, tokens[i], false)
		if err != nil {
			return err
		}
		s.close()
	}
	time.Sleep(time.Second)
	before := procStatus(g.pid, "VmRSS:")
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
				if firstErr == nil {
					firstErr = err
				}
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
	const mibBytes = 1 << 20
	fmt.Printf("\nIdle SSE streams on one replica (fresh process, one user per stream; opened in %.1f s)\n\n", openTime.Seconds())
	fmt.Printf("| streams | when | RSS | per stream over the %.1f MiB baseline | Go heap in use | goroutine stacks | goroutines |\n", mib(before))
	fmt.Println("|---|---|---|---|---|---|---|")
	report := func(when string) {
		after := procStatus(g.pid, "VmRSS:")
		m := b.metrics(g)
		fmt.Printf("| %.0f | %s | %.1f MiB | %.1f KiB | %.1f MiB | %.1f MiB | %d |\n", m["mcpgate_sse_streams"], when, mib(after),
			float64(after-before)/float64(n), m["go_memstats_heap_inuse_bytes"]/mibBytes,
			m["go_memstats_stack_inuse_bytes"]/mibBytes, int(m["go_goroutines"]))
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
	fmt.Printf("\npeak RSS %.1f MiB\n", mib(peakRSS(g.pid)))
	return nil
}

// metrics reads the unlabelled samples of a replica's /metrics.
func (b *sseBench) metrics(g *replica) map[string]float64 {
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

// raiseFileLimit lifts the soft open-files limit to the hard one (children inherit it): ten
// thousand streams need ten thousand sockets on each side.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
