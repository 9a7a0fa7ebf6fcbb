package e2e

import (
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// liveStream is an open /mcp/sse response read to its end in the background.
type liveStream struct {
	endpoint string
	ended    chan error // receives how the stream ended (io.EOF: the response's clean end)
}

func openLiveStream(t *testing.T, base, token string) *liveStream {
	t.Helper()
	endpoint, resp := openStream(t, base, "", token)
	s := &liveStream{endpoint: endpoint, ended: make(chan error, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				s.ended <- err
				return
			}
		}
	}()
	return s
}

// TestSSERevokeClosesStream: `mcpgate sessions revoke` ends the session's open SSE stream
// within about a second (cleanly: the response's end, not a broken connection), after which
// its session id is refused; another session of the same user keeps its stream.
func TestSSERevokeClosesStream(t *testing.T) {
	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	s := startSSEStack(t, fa.URL, fa.Key)
	other := harness.DevLogin(t, s.gw.URL, harness.DevLoginOptions{Name: "Sse Tester"})
	revoked := openLiveStream(t, s.gw.URL, s.tok.Access)
	kept := openLiveStream(t, s.gw.URL, other.Access)
	if st := postMessage(t, s.gw.URL+revoked.endpoint, s.tok.Access, `{"jsonrpc":"2.0","id":1,"method":"ping"}`); st != 202 {
		t.Fatalf("POST before the revocation: %d", st)
	}

	bin := harness.BuildBinary(t, "github.com/mcpgate/mcpgate/gateway/cmd/mcpgate")
	started := time.Now()
	out, err := exec.Command(bin, "sessions", "revoke", "--redis-url", s.redis.URL(), "--client", s.tok.ClientID).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "revoked 1 session(s)") {
		t.Fatalf("sessions revoke: %v\n%s", err, out)
	}
	revokedAt := time.Now()
	select {
	case err := <-revoked.ended:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("revoked session's stream ended with %v, want its clean end", err)
		}
		t.Logf("stream ended %v after `sessions revoke` started (the command took %v)",
			time.Since(started).Round(time.Millisecond), revokedAt.Sub(started).Round(time.Millisecond))
	case <-time.After(2 * time.Second):
		t.Fatal("the revoked session's stream is still open 2 s after `sessions revoke`")
	}
	// The old session id is refused: with the revoked token by the chain, with a valid token of
	// the same user because the session no longer exists.
	if st := postMessage(t, s.gw.URL+revoked.endpoint, s.tok.Access, `{"jsonrpc":"2.0","id":2,"method":"ping"}`); st != 401 {
		t.Fatalf("POST with the revoked token: %d, want 401", st)
	}
	if st := postMessage(t, s.gw.URL+revoked.endpoint, other.Access, `{"jsonrpc":"2.0","id":2,"method":"ping"}`); st != 404 {
		t.Fatalf("POST to the closed session: %d, want 404", st)
	}
	// The other session's stream is open and working.
	select {
	case err := <-kept.ended:
		t.Fatalf("another session's stream ended: %v", err)
	default:
	}
	if st := postMessage(t, s.gw.URL+kept.endpoint, other.Access, `{"jsonrpc":"2.0","id":3,"method":"ping"}`); st != 202 {
		t.Fatalf("POST on the other session: %d", st)
	}
	// Info lines are buffered briefly (MCPGATE_LOG_FLUSH_INTERVAL).
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(s.gw.Output(), `"reason":"grant_revoked"`); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no `sse stream closed` log line with reason grant_revoked")
		}
	}
}

// TestSSEConfiguredLimits: MCPGATE_SSE_MAX_STREAMS_PER_USER reaches the bridge, and a limit
// that is not a positive integer stops `mcpgate serve` with a message naming it.
func TestSSEConfiguredLimits(t *testing.T) {
	bin := harness.BuildBinary(t, "github.com/mcpgate/mcpgate/gateway/cmd/mcpgate")
	cmd := exec.Command(bin, "serve", "--dev", "--sse-max-pending-messages", "0")
	cmd.Dir = t.TempDir()
	cmd.Env = append(cmd.Environ(), "MCPGATE_SSE_MAX_STREAMS=-5")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "MCPGATE_SSE_MAX_STREAMS") || !strings.Contains(string(out), "MCPGATE_SSE_MAX_PENDING_MESSAGES") {
		t.Fatalf("serve with bad SSE limits: %v\n%s", err, out)
	}

	fa := harness.StartFunctionApp(t, harness.FunctionAppOptions{})
	rds := harness.StartRedis(t)
	gw := harness.StartGateway(t, harness.GatewayOptions{BackendURL: fa.URL, FunctionKey: fa.Key, RedisURL: rds.URL(),
		Dev: true, Env: []string{"MCPGATE_SSE_MAX_STREAMS_PER_USER=1"}})
	waitReady(t, gw.URL)
	tok := harness.DevLogin(t, gw.URL, harness.DevLoginOptions{Name: "Limited"})
	openLiveStream(t, gw.URL, tok.Access)
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/mcp/sse", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" {
		t.Fatalf("second stream of the user with MCPGATE_SSE_MAX_STREAMS_PER_USER=1: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Another user is not limited by it.
	openLiveStream(t, gw.URL, harness.DevLogin(t, gw.URL, harness.DevLoginOptions{Name: "Unlimited"}).Access)
}
