package oauth

import (
	"bytes"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogsHoldNoSecrets runs a flow with failures and checks that the logs name no code,
// token, state, CSRF value or cookie.
func TestLogsHoldNoSecrets(t *testing.T) {
	var buf syncBuf
	e := newEnv(t, func(c *Config, _ *clients.Options) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	c := e.register(t, map[string]any{})
	b := newBrowser(e.h)
	v, ch := pkce()
	res := e.authorize(t, b, c, ch, url.Values{"state": {"CLIENTSTATE123"}})
	code := res.Redirect.Query().Get("code")
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {c.Redirect}, "client_id": {c.ID}, "code_verifier": {v}}
	_, tok := e.token(t, form)
	e.token(t, form) // replay: logged as a warning
	e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {"wrong"}})
	secrets := []string{code, v, ch, "CLIENTSTATE123", tok["access_token"].(string), tok["refresh_token"].(string)}
	for _, ck := range b.cookies {
		secrets = append(secrets, ck.Value)
	}
	logs := buf.String()
	if !strings.Contains(logs, "authorization code replayed") {
		t.Fatalf("expected log lines missing:\n%s", logs)
	}
	for _, s := range secrets {
		if len(s) >= 8 && strings.Contains(logs, s) {
			t.Errorf("logs contain a secret (%.6s…)", s)
		}
	}
}
