package harness

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DevLoginOptions configure DevLogin.
type DevLoginOptions struct {
	// Name is the development user's name (default "Dev User"); the user id derives from it.
	Name string
	// Resource is the RFC 8707 resource to ask for (default none: the token is good on every
	// MCP endpoint).
	Resource string
	// Via, when set, is where every request of the flow goes instead of gatewayURL (with
	// gatewayURL's Host): one replica behind a load balancer, since the development login
	// keeps its codes in the memory of the replica that issued them.
	Via string
}

// DevTokens is the outcome of DevLogin.
type DevTokens struct {
	Access, Refresh, ClientID string
}

// DevLoginToken runs the OAuth flow through a gateway started with --dev (register, authorize,
// consent, development login, callback, token) and returns an access and a refresh token.
func DevLoginToken(t testing.TB, gatewayURL string) (access, refresh string) {
	t.Helper()
	tok := DevLogin(t, gatewayURL, DevLoginOptions{})
	return tok.Access, tok.Refresh
}

var (
	devFormCSRF    = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	devFormRequest = regexp.MustCompile(`name="request" value="([^"]+)"`)
	devFormField   = regexp.MustCompile(`name="(state|nonce|code_challenge)" value="([^"]*)"`)
)

// DevLogin is DevLoginToken with options.
func DevLogin(t testing.TB, gatewayURL string, o DevLoginOptions) DevTokens {
	t.Helper()
	if o.Name == "" {
		o.Name = "Dev User"
	}
	c := &flowClient{t: t, cookies: map[string]string{}, origin: gatewayURL, via: o.Via, c: &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	redirect := "http://127.0.0.1:" + strconv.Itoa(FreePort(t)) + "/callback"
	_, b := c.do(http.MethodPost, gatewayURL+"/register", "application/json",
		`{"client_name":"e2e dev","redirect_uris":["`+redirect+`"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"]}`, 201)
	var reg struct {
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal([]byte(b), &reg); err != nil || reg.ClientID == "" {
		t.Fatalf("harness: dev login: registration %s", b)
	}
	clientID := reg.ClientID
	vb := make([]byte, 32)
	_, _ = rand.Read(vb)
	verifier := base64.RawURLEncoding.EncodeToString(vb)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
		"state": {"dev-state"}, "scope": {"mcp:tools offline_access"}}
	if o.Resource != "" {
		q.Set("resource", o.Resource)
	}
	resp, _ := c.do(http.MethodGet, gatewayURL+"/authorize?"+q.Encode(), "", "", 302)
	next := c.location(resp)
	if strings.HasPrefix(next, gatewayURL+"/consent") || strings.HasPrefix(next, "/consent") {
		_, page := c.do(http.MethodGet, c.abs(next), "", "", 200)
		reqM, csrfM := devFormRequest.FindStringSubmatch(page), devFormCSRF.FindStringSubmatch(page)
		if reqM == nil || csrfM == nil {
			t.Fatalf("harness: dev login: consent page without its form:\n%.2000s", page)
		}
		form := url.Values{"request": {html.UnescapeString(reqM[1])}, "csrf": {html.UnescapeString(csrfM[1])}, "action": {"allow"}}
		resp, _ = c.do(http.MethodPost, gatewayURL+"/consent", "application/x-www-form-urlencoded", form.Encode(), 303)
		next = c.location(resp)
	}
	if !strings.Contains(next, "/dev-login") {
		t.Fatalf("harness: dev login: expected the development login, got a redirect to %s (is the gateway started with --dev?)", next)
	}
	_, page := c.do(http.MethodGet, c.abs(next), "", "", 200)
	form := url.Values{"name": {o.Name}, "email": {strings.ToLower(strings.ReplaceAll(o.Name, " ", ".")) + "@example.com"}}
	for _, m := range devFormField.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	resp, _ = c.do(http.MethodPost, gatewayURL+"/dev-login", "application/x-www-form-urlencoded", form.Encode(), 303)
	resp, _ = c.do(http.MethodGet, c.abs(c.location(resp)), "", "", 302)
	back, err := url.Parse(c.location(resp))
	if err != nil || !strings.HasPrefix(back.String(), redirect) || back.Query().Get("code") == "" {
		t.Fatalf("harness: dev login: callback redirected to %s", back)
	}
	tf := url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")}, "redirect_uri": {redirect},
		"client_id": {clientID}, "code_verifier": {verifier}}
	if o.Resource != "" {
		tf.Set("resource", o.Resource)
	}
	_, b = c.do(http.MethodPost, gatewayURL+"/token", "application/x-www-form-urlencoded", tf.Encode(), 200)
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal([]byte(b), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("harness: dev login: token response %.300s", b)
	}
	return DevTokens{Access: tok.AccessToken, Refresh: tok.RefreshToken, ClientID: clientID}
}

// DevRefresh exchanges a refresh token at the gateway and returns the new pair.
func DevRefresh(t testing.TB, gatewayURL, clientID, refresh string) DevTokens {
	t.Helper()
	c := &flowClient{t: t, cookies: map[string]string{}, origin: gatewayURL, c: &http.Client{Timeout: 15 * time.Second}}
	_, b := c.do(http.MethodPost, gatewayURL+"/token", "application/x-www-form-urlencoded",
		url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {clientID}}.Encode(), 200)
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal([]byte(b), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("harness: refresh: token response %.300s", b)
	}
	return DevTokens{Access: tok.AccessToken, Refresh: tok.RefreshToken, ClientID: clientID}
}

// flowClient follows an OAuth flow by hand: no automatic redirects, cookies kept by name and
// sent over http too (browsers treat 127.0.0.1 as a secure context; Go's cookiejar does not).
type flowClient struct {
	t       testing.TB
	c       *http.Client
	cookies map[string]string
	origin  string
	via     string
}

func (c *flowClient) abs(loc string) string {
	if strings.HasPrefix(loc, "/") {
		return c.origin + loc
	}
	return loc
}

func (c *flowClient) location(resp *http.Response) string {
	c.t.Helper()
	loc := resp.Header.Get("Location")
	if loc == "" {
		c.t.Fatalf("harness: %s %s: no Location", resp.Request.Method, resp.Request.URL.Path)
	}
	return loc
}

func (c *flowClient) do(method, u, contentType, body string, want int) (*http.Response, string) {
	c.t.Helper()
	target := u
	if c.via != "" && strings.HasPrefix(u, c.origin) {
		target = c.via + strings.TrimPrefix(u, c.origin)
	}
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		c.t.Fatalf("harness: %s %s: %v", method, u, err)
	}
	if target != u {
		req.Host = strings.TrimPrefix(strings.TrimPrefix(c.origin, "http://"), "https://")
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if method == http.MethodPost {
		req.Header.Set("Origin", c.origin)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for k, v := range c.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("harness: %s %s: %v", method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	for _, ck := range resp.Cookies() {
		if ck.MaxAge < 0 {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck.Value
		}
	}
	if resp.StatusCode != want {
		c.t.Fatalf("harness: %s %s: status %d, want %d: %.500s", method, req.URL.Path, resp.StatusCode, want, b)
	}
	return resp, string(b)
}
