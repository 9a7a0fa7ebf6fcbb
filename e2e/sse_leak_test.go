package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// redisCLI runs one redis-cli command against r.
func redisCLI(t *testing.T, r *harness.Redis, args ...string) string {
	t.Helper()
	out, err := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(r.Port)}, args...)...).Output()
	if err != nil {
		t.Fatalf("redis-cli %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// TestSSELeak opens and drops 1,000 SSE sessions (half of them after sending a message) and
// checks that the gateway's goroutines, its open-stream gauge, the Redis subscriptions and
// connections and the stream keys all return to their baseline.
func TestSSELeak(t *testing.T) {
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	s := startSSEStack(t, fa.URL, fa.Key, "--replica-id", "leak", "--rate-limit-rps", "100000", "--rate-limit-burst", "100000")
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: tr}

	var refused atomic.Int64
	cycle := func(i int) error {
		for {
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.gw.URL+"/mcp/sse", nil)
			req.Header.Set("Authorization", "Bearer "+s.tok.Access)
			resp, err := client.Do(req)
			if err != nil {
				cancel()
				return err
			}
			if resp.StatusCode == http.StatusServiceUnavailable {
				// The per-user limit, while the gateway notices earlier drops: retry.
				resp.Body.Close()
				cancel()
				refused.Add(1)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if resp.StatusCode != 200 {
				resp.Body.Close()
				cancel()
				return fmt.Errorf("GET /mcp/sse: %d", resp.StatusCode)
			}
			buf := make([]byte, 128)
			n, err := io.ReadAtLeast(resp.Body, buf, 60)
			if err != nil {
				cancel()
				return fmt.Errorf("endpoint event: %v", err)
			}
			ep := strings.TrimSpace(strings.SplitN(string(buf[:n]), "data: ", 2)[1])
			if i%2 == 0 {
				req, _ := http.NewRequest(http.MethodPost, s.gw.URL+ep, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
				req.Header.Set("Authorization", "Bearer "+s.tok.Access)
				req.Header.Set("Content-Type", "application/json")
				presp, err := client.Do(req)
				if err != nil {
					cancel()
					return err
				}
				presp.Body.Close()
				if presp.StatusCode != 202 {
					cancel()
					return fmt.Errorf("POST: %d", presp.StatusCode)
				}
			}
			cancel() // drop the stream (a message may still be in flight)
			resp.Body.Close()
			return nil
		}
	}
	run := func(n, workers int) {
		t.Helper()
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					if err := cycle(i); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	settled := func() {
		t.Helper()
		waitUntil(t, "no open SSE streams", func() bool { return metricValue(t, s.gw.Metrics, "mcpgate_sse_streams", "") == 0 })
		tr.CloseIdleConnections()
	}
	channel := "mcpgate:sse:replica:leak"

	// Warm up (idle connections, pools, the backend transport), then take the baseline.
	run(20, 4)
	settled()
	time.Sleep(500 * time.Millisecond)
	baseGoroutines := metricValue(t, s.gw.Metrics, "go_goroutines", "")
	baseSubs := subscribedClients(t, s.redis)
	if sub := redisCLI(t, s.redis, "PUBSUB", "NUMSUB", channel); !strings.HasSuffix(sub, "\n1") {
		t.Fatalf("PUBSUB NUMSUB %s = %q, want one subscription", channel, sub)
	}

	run(1000, 16)
	settled()
	waitUntil(t, "goroutines back to the baseline", func() bool {
		return metricValue(t, s.gw.Metrics, "go_goroutines", "") <= baseGoroutines+3
	})
	if sub := redisCLI(t, s.redis, "PUBSUB", "NUMSUB", channel); !strings.HasSuffix(sub, "\n1") {
		t.Fatalf("PUBSUB NUMSUB after = %q, want one subscription", sub)
	}
	if ch := redisCLI(t, s.redis, "PUBSUB", "CHANNELS", "mcpgate:sse:*"); ch != channel {
		t.Fatalf("SSE channels after: %q", ch)
	}
	// Subscriptions hold a connection each: their count is back to the baseline (the
	// go-redis command pool may have grown meanwhile; it is bounded by its size).
	if n := subscribedClients(t, s.redis); n != baseSubs {
		t.Fatalf("Redis connections in subscribe mode: %d, baseline %d", n, baseSubs)
	}
	waitUntil(t, "stream keys deleted", func() bool {
		return redisCLI(t, s.redis, "--scan", "--pattern", "mcpgate:sse:*") == ""
	})
	if opened := metricValue(t, s.gw.Metrics, "mcpgate_sse_streams_closed_total", ""); opened < 1020 {
		t.Fatalf("%v streams closed, want ≥ 1020", opened)
	}
	t.Logf("1,000 sessions opened and dropped (%d GETs refused by the per-user limit and retried); goroutines %v → %v",
		refused.Load(), baseGoroutines, metricValue(t, s.gw.Metrics, "go_goroutines", ""))
}

// subscribedClients counts the Redis connections in subscribe mode.
func subscribedClients(t *testing.T, r *harness.Redis) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(redisCLI(t, r, "CLIENT", "LIST"), "\n") {
		if !strings.Contains(line, " sub=0 ") || !strings.Contains(line, " psub=0 ") {
			n++
		}
	}
	return n
}

// waitUntil polls cond for up to 20 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in 20 s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
