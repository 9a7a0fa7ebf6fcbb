package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// runBench starts the stack and measures the three targets.
func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	duration := fs.Duration("duration", 10*time.Second, "measured time per target and concurrency")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured warm-up per target and concurrency")
	concs := fs.String("c", "1,32", "concurrency levels")
	rounds := fs.Int("rounds", 5, "rounds: each measures every concurrency and target once, in rotating order; the summary gives the median of the per-round ratios")
	binDir := fs.String("bin-dir", "", "directory holding handler and mcpgate (default: build them into a temp dir)")
	repo := fs.String("repo", ".", "repository root (for building)")
	tool := fs.String("tool", "hello_mcp", "tool to call")
	gwArgs := fs.String("gateway-args", "", "extra `mcpgate serve` arguments (space separated), e.g. \"--log-level warn\"")
	_ = fs.Parse(args)
	levels, err := parseLevels(*concs)
	if err != nil {
		return err
	}
	if *rounds < 1 {
		return fmt.Errorf("bad -rounds %d: need at least 1", *rounds)
	}
	st, err := newStack("mcpgate-bench-", *repo, binDir)
	if err != nil {
		return err
	}
	defer st.close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	be, err := st.startBackends(*binDir)
	if err != nil {
		return err
	}
	key, fa, faProc := be.key, be.faURL, be.faPID
	hopPort := freePort()
	hop := fmt.Sprintf("http://127.0.0.1:%d", hopPort)
	hopProc, err := st.start("hop", self, []string{"hop", "-listen", "127.0.0.1:" + strconv.Itoa(hopPort), "-backend", fa, "-key-file", be.keyFile}, nil)
	if err != nil {
		return err
	}
	gwPort, mPort := freePort(), freePort()
	gw := fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	gwProc, err := st.start("mcpgate", filepath.Join(*binDir, "mcpgate"), append(st.serveArgs(be, gwPort, mPort, gw), strings.Fields(*gwArgs)...), nil)
	if err != nil {
		return err
	}
	for _, u := range []string{fa + "/", hop + "/", gw + "/readyz"} {
		if err := waitReady(ctx, u, ""); err != nil {
			return fmt.Errorf("%s: %w\n%s", u, err, st.output())
		}
	}
	token, err := mint(ctx, be.redisURL, st.ringFile(), gw+"/mcp", "mcpgate-bench", "bench-user")
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
			fmt.Printf("| %d | %s | %.0f | %s | %s | %d | %s | %.1f |\n", c, t.name, m.rps, ms(m.p50), ms(m.p99), m.errors, us(m.cpuPerReq), mib(hwm[i]))
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
		mib(hwm[2]), mib(hwm[1]), mib(hwm[0]))
	if out, err := exec.Command("redis-cli", "-p", strconv.Itoa(be.redisPort), "info", "commandstats").Output(); err == nil {
		for l := range strings.SplitSeq(string(out), "\n") {
			if strings.HasPrefix(l, "cmdstat_get:") {
				fmt.Printf("Redis GETs during the whole run (the per-replica grant cache should keep this tiny): %s\n", strings.TrimSpace(l))
			}
		}
	}
	fmt.Printf("gateway RSS now: %.1f MiB anonymous (heap, stacks) + %.1f MiB file-backed (the binary's code and tables)\n",
		mib(procStatus(gwProc, "RssAnon:")), mib(procStatus(gwProc, "RssFile:")))
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

func newRequest(ctx context.Context, t target, body string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.url, strings.NewReader(body))
	for k, v := range requestHeaders(t) {
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

// load runs c workers calling t for d, each on its own kept-alive connection with the raw
// client (rawload.go), and returns the latency distribution of the successful calls.
func load(ctx context.Context, t target, body string, c int, d time.Duration) result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			rc, err := newRawClient(t.url, requestHeaders(t), body)
			if err != nil {
				mu.Lock()
				errs++
				mu.Unlock()
				return
			}
			rc.deadline = start.Add(d + 5*time.Second) // a call stuck at the end is cut off
			defer rc.close()
			lat := make([]time.Duration, 0, 1<<14)
			e := 0
			for ctx.Err() == nil {
				t0 := time.Now()
				status, err := rc.do(ctx)
				if err != nil || status != 200 {
					if ctx.Err() == nil {
						e++
					}
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
