package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// TestMCPProxyClients runs real MCP clients through `mcpgate serve` (real redis-server, the
// real oidc-provider upstream, the standalone function app behind it): each completes the
// OAuth flow on its own (discovery, registration, authorize, consent, IdP login, token) and
// calls the snippet tools over Streamable HTTP. One stack serves every subtest.
func TestMCPProxyClients(t *testing.T) {
	s := startOAuthStack(t, oauthStackOptions{})

	t.Run("go-sdk", func(t *testing.T) {
		before := len(s.IdP.Authorizations(t))
		cs, h := goSDKOAuthSession(t, s, "alice")
		// The handler went through the IdP once (as alice) and holds the gateway's tokens.
		if az := s.IdP.Authorizations(t); len(az) != before+1 || az[len(az)-1].Get("login_hint") != "alice" {
			t.Errorf("IdP authorizations %d → %d, want one more, for alice", before, len(az))
		}
		ts, err := h.TokenSource(t.Context())
		if err != nil {
			t.Fatalf("token source: %v", err)
		}
		if tok, err := ts.Token(); err != nil {
			t.Errorf("go-sdk token: %v", err)
		} else if !strings.EqualFold(tok.TokenType, "bearer") || tok.RefreshToken == "" {
			t.Errorf("go-sdk token: type %q, refresh token %v", tok.TokenType, tok.RefreshToken != "")
		}
		exerciseTools(t, cs)
	})

	t.Run("ts-sdk", func(t *testing.T) {
		redirect := "http://127.0.0.1:" + strconv.Itoa(harness.FreePort(t)) + "/oauth/callback"
		name := "ts-sdk-" + harness.RandomString(t, 4) + ".txt"
		out := runNodeJSON(t, "sdk_tools.mjs", s.URL+"/mcp", "alice", redirect, name)
		var res struct {
			OK      bool
			Flow    []string
			Tools   []string
			Content string
			Calls   map[string]tsToolAnswer
		}
		b, _ := json.Marshal(out)
		if err := json.Unmarshal(b, &res); err != nil || !res.OK {
			t.Fatalf("TS SDK run: %v %s", err, b)
		}
		// The transport met the 401, then registration, authorization with consent and the
		// IdP login, and the token exchange, in that order.
		if want := []string{"registered", "authorize", "consent", "idp", "unauthorized", "tokens:bearer"}; !slices.EqualFunc(res.Flow, want, strings.EqualFold) {
			t.Errorf("OAuth flow %v, want %v", res.Flow, want)
		}
		if want := []string{"delete_snippet", "get_snippet", "hello_mcp", "list_snippets", "save_snippet"}; !slices.Equal(res.Tools, want) {
			t.Errorf("tools/list %v, want %v", res.Tools, want)
		}
		c := res.Calls
		if r := c["hello"]; r.IsError || r.Text != "Hello I am MCPTool!" {
			t.Errorf("hello_mcp = %v", r)
		}
		if r := c["save"]; r.IsError || !strings.Contains(r.Text, "'"+name+"' saved") {
			t.Errorf("save_snippet = %v", r)
		}
		if r := c["get"]; r.IsError || r.Text != res.Content || !strings.Contains(r.Text, "✓") {
			t.Errorf("get_snippet = %v, want %q", r, res.Content)
		}
		var listed struct{ Snippets []string }
		if r := c["list"]; r.IsError || json.Unmarshal(r.Structured, &listed) != nil || !slices.Contains(listed.Snippets, name) {
			t.Errorf("list_snippets = %v, want it to hold %q", r, name)
		}
		if r := c["delete"]; r.IsError || !strings.Contains(r.Text, "deleted") {
			t.Errorf("delete_snippet = %v", r)
		}
		if r := c["getAfterDelete"]; !r.IsError || !strings.Contains(r.Text, "snippet '"+name+"' not found") {
			t.Errorf("get_snippet after delete = %v, want a not-found tool error", r)
		}
		if r := c["badName"]; !r.IsError || !strings.Contains(r.Text, "invalid snippet name") {
			t.Errorf("save_snippet with a bad name = %v, want a validation tool error", r)
		}
	})

	t.Run("inspector-cli", func(t *testing.T) {
		_, h := goSDKOAuthSession(t, s, "bob")
		ts, err := h.TokenSource(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		tok, err := ts.Token()
		if err != nil || tok.AccessToken == "" {
			t.Fatalf("token from the flow: %v", err)
		}
		bearer := "Authorization: Bearer " + tok.AccessToken
		out, err := inspectorHeader(t, s.URL+"/mcp", bearer, "--method", "tools/list")
		if err != nil {
			t.Fatalf("inspector tools/list: %v\n%s", err, out)
		}
		var list mcp.ListToolsResult
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("tools/list output: %v\n%s", err, out)
		}
		checkToolList(t, list.Tools, "inspector through the gateway")

		out, err = inspectorHeader(t, s.URL+"/mcp", bearer, "--method", "tools/call", "--tool-name", "hello_mcp")
		var res struct {
			Content []struct{ Text string }
			IsError bool
		}
		if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.IsError || len(res.Content) != 1 || res.Content[0].Text != "Hello I am MCPTool!" {
			t.Fatalf("inspector tools/call hello_mcp: %v\n%s", err, out)
		}

		// Without the token (the CLI has no OAuth) the gateway refuses it and the CLI fails.
		if out, err := inspectorHeader(t, s.URL+"/mcp", "", "--method", "tools/list"); err == nil {
			t.Fatalf("inspector listed tools without a token:\n%s", out)
		} else if !strings.Contains(out, "Failed to connect") {
			t.Fatalf("without a token: want a connection failure, got %v:\n%s", err, out)
		}
		if strings.Contains(s.Gateway.Output(), tok.AccessToken) {
			t.Fatal("the gateway logged the access token")
		}
	})
}

// tsToolAnswer is one tool answer as sdk_tools.mjs reports it.
type tsToolAnswer struct {
	Text       string
	IsError    bool
	Structured json.RawMessage
}

func (a tsToolAnswer) String() string {
	return fmt.Sprintf("%q isError=%v structured=%s", a.Text, a.IsError, a.Structured)
}

// goSDKOAuthSession connects the go-sdk client to the stack's /mcp with its authorization-code
// OAuth handler (dynamic registration; the fetcher plays the browser: consent form, IdP login
// as user) and returns the session and the handler.
func goSDKOAuthSession(t *testing.T, s *oauthStack, user string) (*mcp.ClientSession, *auth.AuthorizationCodeHandler) {
	t.Helper()
	redirect := "http://127.0.0.1:" + strconv.Itoa(harness.FreePort(t)) + "/callback"
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			ClientName: "go-sdk e2e", RedirectURIs: []string{redirect}, TokenEndpointAuthMethod: "none",
			GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
		}},
		RedirectURL:              redirect,
		AuthorizationCodeFetcher: browserFetcher(s, user, redirect),
		RequestRefreshToken:      true,
		Client:                   &http.Client{Timeout: 15 * time.Second},
	})
	if err != nil {
		t.Fatalf("go-sdk OAuth handler: %v", err)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "go-sdk-oauth-e2e", Version: "0"}, nil)
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{
		Endpoint: s.URL + "/mcp", OAuthHandler: h, DisableStandaloneSSE: true, MaxRetries: -1,
		HTTPClient: &http.Client{Timeout: 30 * time.Second},
	}, nil)
	if err != nil {
		t.Fatalf("go-sdk connect with OAuth: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs, h
}

// browserFetcher is an auth.AuthorizationCodeFetcher that does what a user's browser does:
// it follows the gateway's redirects with a cookie jar, posts the consent form (allow), signs
// in at the fixture IdP as user (login_hint) and stops at the client's redirect URL.
func browserFetcher(s *oauthStack, user, redirect string) auth.AuthorizationCodeFetcher {
	return func(ctx context.Context, a *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		jar, err := cookiejar.New(nil)
		if err != nil {
			return nil, err
		}
		c := &http.Client{Jar: jar, Timeout: 15 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		next := a.URL
		for range 20 {
			if strings.HasPrefix(next, redirect) {
				u, err := url.Parse(next)
				if err != nil {
					return nil, err
				}
				q := u.Query()
				if e := q.Get("error"); e != "" {
					return nil, fmt.Errorf("authorization refused: %s", e)
				}
				return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
			}
			u, err := url.Parse(next)
			if err != nil {
				return nil, err
			}
			var req *http.Request
			switch {
			case strings.HasPrefix(next, s.URL+"/consent"):
				form, err := consentForm(ctx, c, next)
				if err != nil {
					return nil, err
				}
				req, _ = http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/consent", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Origin", s.URL)
			case strings.HasPrefix(next, s.IdP.Issuer+"/auth?"):
				q := u.Query()
				q.Set("login_hint", user)
				u.RawQuery = q.Encode()
				fallthrough
			default:
				req, _ = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			}
			resp, err := c.Do(req)
			if err != nil {
				return nil, err
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			loc, err := resp.Location()
			if err != nil {
				return nil, fmt.Errorf("%s %s: HTTP %d without redirect", req.Method, req.URL.Path, resp.StatusCode)
			}
			next = loc.String()
		}
		return nil, errors.New("too many redirects")
	}
}

// consentForm loads the gateway's consent page and returns the form that allows the request.
func consentForm(ctx context.Context, c *http.Client, page string) (url.Values, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, page, nil)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	csrf, request := formCSRF.FindSubmatch(b), formRequest.FindSubmatch(b)
	if resp.StatusCode != http.StatusOK || csrf == nil || request == nil {
		return nil, fmt.Errorf("consent page: HTTP %d without the form", resp.StatusCode)
	}
	return url.Values{"request": {unescapeAttr(string(request[1]))}, "csrf": {unescapeAttr(string(csrf[1]))}, "action": {"allow"}}, nil
}
