package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// runBench starts the stack and measures the three targets.
func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	duration := fs.Duration("duration", 10*time.Second, "measured time per target and concurrency")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured warm-up per target and concurrency")
	concs := fs.String("c", "1,32", "concurrency levels")
	rounds := fs.Int("rounds", 3, "rounds: each measures every concurrency and target once, in rotating order; the summary gives the median of the per-round ratios")
	binDir := fs.String("bin-dir", "", "directory holding handler and mcpgate (default: build them into a temp dir)")
	repo := fs.String("repo", ".", "repository root (for building)")
	tool := fs.String("tool", "hello_mcp", "tool to call")
	gwArgs := fs.String("gateway-args", "", "extra `mcpgate serve` arguments (space separated), e.g. \"--log-level warn\"")
	_ = fs.Parse(args)
	var levels []int
	for s := range strings.SplitSeq(*concs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("bad -c %q", *concs)
		}
		levels = append(levels, n)
	}
	if *rounds < 1 {
		return fmt.Errorf("bad -rounds %d: need at least 1", *rounds)
	}
	work, err := os.MkdirTemp("", "mcpgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	st := &stack{dir: work}
	defer st.stop()

	if *binDir == "" {
		*binDir = filepath.Join(work, "bin")
		if err := buildShipped(*repo, *binDir); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	key := randomKey()
	secrets := filepath.Join(work, "secrets")
	if err := writeHostSecrets(secrets, key); err != nil {
		return err
	}
	keyFile := filepath.Join(work, "function-key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		return err
	}

	redisPort := freePort()
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d/0", redisPort)
	if _, err := st.start("redis", "redis-server", []string{"--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "warning"}, nil); err != nil {
		return err
	}
	faPort := freePort()
	fa := fmt.Sprintf("http://127.0.0.1:%d", faPort)
	faProc, err := st.start("functionapp", filepath.Join(*binDir, "handler"), nil, []string{
		"FUNCTIONAPP_LISTEN=127.0.0.1:" + strconv.Itoa(faPort), "FUNCTIONAPP_SECRETS_DIR=" + secrets,
		"SNIPPETS_DIR=" + filepath.Join(work, "snippets"), "FUNCTIONS_CUSTOMHANDLER_PORT="})
	if err != nil {
		return err
	}
	hopPort := freePort()
	hop := fmt.Sprintf("http://127.0.0.1:%d", hopPort)
	hopProc, err := st.start("hop", self, []string{"hop", "-listen", "127.0.0.1:" + strconv.Itoa(hopPort), "-backend", fa, "-key-file", keyFile}, nil)
	if err != nil {
		return err
	}
	gwPort, mPort := freePort(), freePort()
	gw := fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	gwProc, err := st.start("mcpgate", filepath.Join(*binDir, "mcpgate"), append([]string{"serve",
		"--listen", "127.0.0.1:" + strconv.Itoa(gwPort), "--public-url", gw, "--metrics-listen", "127.0.0.1:" + strconv.Itoa(mPort),
		"--backend-url", fa, "--function-key-file", keyFile, "--redis-url", redisURL, "--dev",
		"--session-keys-file", filepath.Join(work, "session-keys.json"), "--clients-store", filepath.Join(work, "clients"),
		"--rate-limit-rps", "1000000", "--rate-limit-burst", "1000000"}, strings.Fields(*gwArgs)...), nil)
	if err != nil {
		return err
	}
	for _, u := range []string{fa + "/", hop + "/", gw + "/readyz"} {
		if err := waitReady(ctx, u); err != nil {
			return fmt.Errorf("%s: %w\n%s", u, err, st.output())
		}
	}
	token, err := mint(ctx, redisURL, filepath.Join(work, "session-keys.json"), gw+"/mcp", "mcpgate-bench", "bench-user")
	if err != nil {
		return err
	}
	targets := []target{
		{name: "function app (direct)", url: fa + "/mcp", headers: map[string]string{"X-Functions-Key": key}, pid: faProc},
		{name: "plain httputil.ReverseProxy hop", url: hop + "/mcp", pid: hopProc},
		{name: "mcpgate (full chain)", url: gw + "/mcp", headers: map[string]string{"Authorization": "Bearer " + token}, pid: gwProc},
	}
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%q,"arguments":{}}}`, *tool)
	for i := range targets {
		if err := probe(ctx, targets[i], body); err != nil {
			return fmt.Errorf("%s: %w", targets[i].name, err)
		}
	}
	fmt.Printf("# mcpgate-bench: tools/call %s, %s per run after %s warm-up, GOMAXPROCS=%d, %d CPUs, %s\n\n",
		*tool, *duration, *warmup, runtime.GOMAXPROCS(0), runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	// results[c][round][target]: targets are measured in a rotating order per round so that
	// slow drift of the machine (other work, thermal state) does not favour one target.
	results := map[int][][]result{}
	for round := range *rounds {
		for _, c := range levels {
			rs := make([]result, len(targets))
			for k := range targets {
				i := (k + round) % len(targets)
				t := targets[i]
				if ctx.Err() != nil {
					return ctx.Err()
				}
				_ = load(ctx, t, body, c, *warmup)
				cpu0 := cpuTime(t.pid)
				r := load(ctx, t, body, c, *duration)
				if r.rps > 0 {
					r.cpuPerReq = (cpuTime(t.pid) - cpu0) / time.Duration(r.rps*duration.Seconds())
				}
				rs[i] = r
				fmt.Fprintf(os.Stderr, "round %d c=%d %-32s %8.0f rps p50 %s p99 %s errors %d cpu/req %s\n", round+1, c, t.name, r.rps, ms(r.p50), ms(r.p99), r.errors, us(r.cpuPerReq))
			}
			results[c] = append(results[c], rs)
		}
	}
	hwm := []int64{peakRSS(faProc), peakRSS(hopProc), peakRSS(gwProc)}
	fmt.Printf("Medians over %d rounds.\n\n", *rounds)
	fmt.Println("| concurrency | target | rps | p50 ms | p99 ms | errors | CPU µs/request (own process) | peak RSS MiB |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---:|---:|")
	for _, c := range levels {
		for i, t := range targets {
			m := medianOf(results[c], i)
			fmt.Printf("| %d | %s | %.0f | %s | %s | %d | %s | %.1f |\n", c, t.name, m.rps, ms(m.p50), ms(m.p99), m.errors, us(m.cpuPerReq), float64(hwm[i])/1024)
		}
	}
	fmt.Println()
	for _, c := range levels {
		var ratios, tput []float64
		var per []string
		for _, rs := range results[c] {
			direct, hopR, gwR := rs[0], rs[1], rs[2]
			hopAdd, gwAdd := hopR.p50-direct.p50, gwR.p50-direct.p50
			tput = append(tput, gwR.rps/hopR.rps)
			if hopAdd <= 0 || gwAdd < 0 {
				// The direct target was slower than a proxy in front of it: this round says
				// nothing about the proxies (the machine was busy); leave it out.
				per = append(per, fmt.Sprintf("hop %s / gateway %s ms → no ratio (noise)", ms(hopAdd), ms(gwAdd)))
				continue
			}
			ratio := float64(gwAdd) / float64(hopAdd)
			ratios = append(ratios, ratio)
			per = append(per, fmt.Sprintf("hop %s / gateway %s ms → %.2f", ms(hopAdd), ms(gwAdd), ratio))
		}
		med := "n/a"
		if len(ratios) > 0 {
			med = strconv.FormatFloat(median(ratios), 'f', 2, 64)
		}
		fmt.Printf("c=%d: added p50 ratio gateway/hop, median %s (%s); throughput gateway/hop, median %.2f\n",
			c, med, strings.Join(per, "; "), median(tput))
	}
	fmt.Printf("peak RSS under load: gateway %.1f MiB, hop %.1f MiB, function app %.1f MiB\n",
		float64(hwm[2])/1024, float64(hwm[1])/1024, float64(hwm[0])/1024)
	if out, err := exec.Command("redis-cli", "-p", strconv.Itoa(redisPort), "info", "commandstats").Output(); err == nil {
		for l := range strings.SplitSeq(string(out), "\n") {
			if strings.HasPrefix(l, "cmdstat_get:") {
				fmt.Printf("Redis GETs during the whole run (the per-replica grant cache should keep this tiny): %s\n", strings.TrimSpace(l))
			}
		}
	}
	fmt.Printf("gateway RSS now: %.1f MiB anonymous (heap, stacks) + %.1f MiB file-backed (the binary's code and tables)\n",
		float64(procStatus(gwProc, "RssAnon:"))/1024, float64(procStatus(gwProc, "RssFile:"))/1024)
	return nil
}

type target struct {
	name    string
	url     string
	headers map[string]string
	pid     int
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	errors   int
	// cpuPerReq is the CPU time the target's own process spent per request (for the hop
	// and the gateway this excludes the function app behind them).
	cpuPerReq time.Duration
}

// cpuTime is the user+system CPU time of pid so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}

func us(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) }

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64)
}

func newRequest(ctx context.Context, t target, body string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	for k, v := range t.headers {
		req.Header.Set(k, v)
	}
	return req
}

func probe(ctx context.Context, t target, body string) error {
	resp, err := http.DefaultClient.Do(newRequest(ctx, t, body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"result"`)) {
		return fmt.Errorf("probe: %d %s", resp.StatusCode, b)
	}
	return nil
}

// load runs c workers calling t for d and returns the latency distribution of successes.
func load(ctx context.Context, t target, body string, c int, d time.Duration) result {
	tr := &http.Transport{MaxIdleConns: c * 2, MaxIdleConnsPerHost: c * 2, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<14)
			e := 0
			for ctx.Err() == nil {
				t0 := time.Now()
				resp, err := client.Do(newRequest(ctx, t, body))
				if err != nil {
					if ctx.Err() == nil {
						e++
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					e++
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			errs += e
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(all)
	r := result{errors: errs, rps: float64(len(all)) / elapsed.Seconds()}
	if n := len(all); n > 0 {
		r.p50, r.p99 = all[n*50/100], all[min(n-1, n*99/100)]
	}
	return r
}

// peakRSS returns VmHWM (KiB) of pid.
func peakRSS(pid int) int64 { return procStatus(pid, "VmHWM:") }

// procStatus returns a kB field of /proc/pid/status.
func procStatus(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// stack holds the child processes.
type stack struct {
	dir   string
	procs []*exec.Cmd
	logs  []string // each process's output file
}

// start runs bin with its output in a file of the work directory (as a container runtime
// would collect it, and without making the load generator copy the gateway's access log).
func (s *stack) start(name, bin string, args, env []string) (int, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = s.dir
	logPath := filepath.Join(s.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return 0, err
	}
	defer f.Close() // the child keeps its own descriptor
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", name, err)
	}
	s.procs = append(s.procs, cmd)
	s.logs = append(s.logs, logPath)
	return cmd.Process.Pid, nil
}

// output returns the tail of every process's output, for error messages.
func (s *stack) output() string {
	var b strings.Builder
	for i, c := range s.procs {
		out, _ := os.ReadFile(s.logs[i])
		fmt.Fprintf(&b, "--- %s ---\n%s\n", filepath.Base(c.Path), tail(string(out), 2000))
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (s *stack) stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		c := s.procs[i]
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

func waitReady(ctx context.Context, u string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
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
	return errors.New("not ready within 30 s")
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomKey() string {
	b := make([]byte, 40)
	_, _ = rand.Read(b)
	return base64.URLEncoding.EncodeToString(b)
}

// writeHostSecrets writes the standalone function app's host.json (the Functions host's
// secrets format) with a master key and the host function key "gateway".
func writeHostSecrets(dir, key string) error {
	type k struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		Encrypted bool   `json:"encrypted"`
	}
	doc := map[string]any{"masterKey": k{Name: "master", Value: randomKey()}, "functionKeys": []k{{Name: "gateway", Value: key}}, "systemKeys": []k{}}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "host.json"), b, 0o600)
}

// buildShipped builds the function app and the gateway into dir exactly as they ship
// (gateway/Dockerfile, scripts/package-functionapp.sh): each module on its own (GOWORK=off),
// static (CGO_ENABLED=0), -trimpath, without symbol tables (-ldflags "-s -w"). How the binary is
// built changes its resident size: a cgo build links libc, and symbols move the layout.
func buildShipped(repo, dir string) error {
	for _, b := range []struct{ module, pkg, out string }{
		{"functionapp", "./cmd/handler", "handler"},
		{"gateway", "./cmd/mcpgate", "mcpgate"},
	} {
		fmt.Fprintf(os.Stderr, "building %s/%s (as shipped: static, -trimpath, -s -w)\n", b.module, b.pkg)
		out, err := filepath.Abs(filepath.Join(dir, b.out))
		if err != nil {
			return err
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, b.pkg)
		cmd.Dir, cmd.Stderr = filepath.Join(repo, b.module), os.Stderr
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s/%s: %w", b.module, b.pkg, err)
		}
	}
	return nil
}

// medianOf returns, field by field, the median over rounds of target i's results.
func medianOf(rounds [][]result, i int) result {
	var rps, p50, p99, cpu []float64
	errs := 0
	for _, rs := range rounds {
		r := rs[i]
		rps, p50, p99, cpu = append(rps, r.rps), append(p50, float64(r.p50)), append(p99, float64(r.p99)), append(cpu, float64(r.cpuPerReq))
		errs += r.errors
	}
	return result{rps: median(rps), p50: time.Duration(median(p50)), p99: time.Duration(median(p99)),
		cpuPerReq: time.Duration(median(cpu)), errors: errs}
}

// median returns the median of v (the mean of the middle two for an even count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
