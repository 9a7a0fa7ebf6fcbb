package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

const helloCall = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_mcp","arguments":{}}}`

// counterSum sums the samples of a Prometheus counter whose line matches the regexp.
func counterSum(t *testing.T, metricsURL, pattern string) float64 {
	t.Helper()
	resp, err := http.Get(metricsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`^` + pattern + ` ([0-9.e+]+)$`)
	total := 0.0
	for l := range strings.SplitSeq(string(b), "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			total += v
		}
	}
	return total
}

// TestMCPProxyFaults runs the real function app behind `mcpgate serve` on a real Redis and
// breaks things: Redis dies mid-traffic and returns, the function key is rotated, the function
// app stops. The gateway must fail closed, recover by itself, and never leak the key or the
// backend's address.
func TestMCPProxyFaults(t *testing.T) {
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	gw := startMCPGateway(t, fa.URL, fa.Key, nil)
	backendAddr := strings.TrimPrefix(fa.URL, "http://")
	call := func() (int, string) {
		t.Helper()
		code, hdr, body := mcpPost(t, gw.URL, gw.Token, helloCall)
		var raw strings.Builder
		_ = hdr.Write(&raw)
		for _, secret := range []string{fa.Key, backendAddr, gw.Token} {
			if strings.Contains(body, secret) || strings.Contains(raw.String(), secret) {
				t.Fatalf("response leaks a secret or the backend address: %d %v %s", code, hdr, body)
			}
		}
		return code, body
	}
	if code, body := call(); code != 200 || !strings.Contains(body, `"result"`) {
		t.Fatalf("tools/call through the gateway: %d %s", code, body)
	}

	parent := t // processes restarted in a subtest must outlive it
	t.Run("redis stopped mid-traffic", func(t *testing.T) {
		gw.Redis.Kill()
		start := time.Now()
		var got503 time.Duration
		for time.Since(start) < 15*time.Second {
			code, body := call()
			if code == 503 {
				got503 = time.Since(start)
				break
			}
			if code != 200 {
				t.Fatalf("with Redis down: %d %s (want 200 from the cache, then 503)", code, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got503 == 0 {
			t.Fatal("no 503 after Redis stopped")
		}
		t.Logf("first 503 %v after Redis stopped", got503)
		if code, _ := call(); code != 503 {
			t.Fatalf("second call with Redis down: %d", code)
		}
		resp, err := http.Get(gw.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Fatalf("/readyz with Redis down: %d", resp.StatusCode)
		}
		// Redis returns (empty: it kept nothing): the gateway recovers without a restart.
		gw.Redis.Restart(parent)
		harness.WaitHTTP(t, gw.Process, gw.URL+"/healthz", 10*time.Second)
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, err := http.Get(gw.URL + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("gateway not ready again after Redis returned")
			}
			time.Sleep(100 * time.Millisecond)
		}
		gw.Token = gw.mint(t) // the restarted Redis lost the grant
		if code, body := call(); code != 200 {
			t.Fatalf("after Redis returned: %d %s", code, body)
		}
	})

	t.Run("function key rotated", func(t *testing.T) {
		newKey := harness.NewFunctionKey(t)
		// The function app now accepts only the new key…
		harness.WriteHostSecrets(t, fa.SecretsDir, harness.NewFunctionKey(t), map[string]string{"gateway": newKey})
		deadline := time.Now().Add(10 * time.Second)
		for {
			if code, _ := rawPost(t, fa.URL+"/mcp", fa.Key, nil, helloCall); code == 401 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the function app still accepts the old key")
			}
			time.Sleep(100 * time.Millisecond)
		}
		// …and the gateway's key file gets it. The next call meets a 401 with the cached old
		// key, refreshes the key source once, and retries with the new key.
		before := counterSum(t, gw.Metrics, `mcpgate_mcp_backend_key_retries_total\{result="retried"\}`)
		if err := os.WriteFile(gw.KeyFile, []byte(newKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, body := call(); code != 200 {
			t.Fatalf("after rotation: %d %s", code, body)
		}
		retried := counterSum(t, gw.Metrics, `mcpgate_mcp_backend_key_retries_total\{result="retried"\}`) - before
		t.Logf("retries with a refreshed key: %v (0 when the 2 s file poll won the race)", retried)
		fa.Key = newKey
		if code, _ := call(); code != 200 {
			t.Fatalf("second call after rotation: %d", code)
		}
	})

	t.Run("backend stopped", func(t *testing.T) {
		fa.Kill()
		code, body := call()
		if code != 502 || !strings.Contains(body, `"jsonrpc":"2.0","id":null`) {
			t.Fatalf("with the function app down: %d %s", code, body)
		}
		if strings.Contains(body, filepath.Base(fa.SecretsDir)) {
			t.Fatalf("body leaks details: %s", body)
		}
	})
}
