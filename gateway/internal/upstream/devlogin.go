package upstream

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/gateway/internal/identity"
)

// DevLoginPath is where the development login page is served on the gateway.
const DevLoginPath = "/dev-login"

// CallbackPath is the gateway's upstream callback.
const CallbackPath = "/oauth-callback"

const (
	devCodeTTL   = 5 * time.Minute
	devMaxCodes  = 1000
	devTokenLife = time.Hour
	devMaxField  = 100
)

// DevLogin is a stand-in identity provider for local development without any IdP: the
// sign-in page lets anyone type a name and e-mail. It refuses to exist unless the gateway
// listens on loopback, and says so loudly on its page.
type DevLogin struct {
	publicURL string
	origin    string
	issuer    string
	mu        sync.Mutex
	codes     map[string]devCode
	now       func() time.Time
}

type devCode struct {
	user      identity.User
	challenge string
	nonce     string
	exp       time.Time
}

// NewDevLogin returns the development login for a gateway at publicURL listening on
// listenAddr. Both must be loopback (127.0.0.1, ::1 or localhost).
func NewDevLogin(publicURL, listenAddr string) (*DevLogin, error) {
	host, _, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return nil, fmt.Errorf("upstream: development login: listen address %q: %w", listenAddr, err)
	}
	if !loopbackHost(host) {
		return nil, fmt.Errorf("upstream: the development login is allowed only when listening on loopback, not %q", listenAddr)
	}
	u, err := url.Parse(publicURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("upstream: development login: public URL %q is not an http(s) URL", publicURL)
	}
	if !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("upstream: the development login is allowed only with a loopback public URL, not %q", publicURL)
	}
	base := strings.TrimSuffix(u.Scheme+"://"+u.Host+u.Path, "/")
	return &DevLogin{publicURL: base, origin: u.Scheme + "://" + u.Host, issuer: base + DevLoginPath,
		codes: map[string]devCode{}, now: time.Now}, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// Issuer is the pseudo-issuer recorded in dev identities.
func (d *DevLogin) Issuer() string { return d.issuer }

// Origin is the gateway's own origin (the dev login page is served by the gateway).
func (d *DevLogin) Origin() string { return d.origin }

// AuthCodeURL returns the gateway's /dev-login page carrying state, nonce and the S256
// challenge of verifier, like a real authorization request.
func (d *DevLogin) AuthCodeURL(state, nonce, verifier string) string {
	q := url.Values{"state": {state}, "nonce": {nonce}, "code_challenge": {s256(verifier)},
		"code_challenge_method": {"S256"}}
	return d.publicURL + DevLoginPath + "?" + q.Encode()
}

func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Handler serves GET and POST /dev-login.
func (d *DevLogin) Handler() http.Handler {
	return http.HandlerFunc(d.serveHTTP)
}

var devPage = template.Must(template.New("dev-login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Development login — mcpgate</title>
<style>
body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;color:#222}
.banner{background:#b00020;color:#fff;padding:1rem;border-radius:6px;font-weight:700}
label{display:block;margin-top:1rem}input{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}
button{margin-top:1.5rem;padding:.6rem 1.4rem;font-size:1rem}.err{color:#b00020}
</style></head><body>
<p class="banner" role="alert">DEVELOPMENT LOGIN — no real identity provider. Anyone can sign in as anyone.
Never use this outside your own machine.</p>
<h1>Sign in (development)</h1>
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="state" value="{{.State}}">
<input type="hidden" name="nonce" value="{{.Nonce}}">
<input type="hidden" name="code_challenge" value="{{.Challenge}}">
<label>Name <input name="name" required maxlength="100" value="{{.Name}}" autofocus></label>
<label>E-mail <input name="email" type="email" maxlength="100" value="{{.Email}}"></label>
<button type="submit">Sign in</button>
</form></body></html>`))

type devPageData struct {
	Action, State, Nonce, Challenge, Name, Email, Error string
}

func (d *DevLogin) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	if r.URL.Path != DevLoginPath {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		q := r.URL.Query()
		data := devPageData{Action: d.publicURL + DevLoginPath, State: q.Get("state"), Nonce: q.Get("nonce"),
			Challenge: q.Get("code_challenge")}
		if !validParam(data.State) || !validParam(data.Nonce) || !validParam(data.Challenge) {
			http.Error(w, "development login: missing or malformed state, nonce or code_challenge", http.StatusBadRequest)
			return
		}
		d.render(w, http.StatusOK, data)
	case http.MethodPost:
		d.post(w, r)
	default:
		h.Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (d *DevLogin) render(w http.ResponseWriter, status int, data devPageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = devPage.Execute(w, data)
}

func validParam(s string) bool {
	if s == "" || len(s) > 512 {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// sameOrigin accepts a POST only from the gateway's own pages: Sec-Fetch-Site (when sent)
// must be same-origin or none, and Origin (when sent) must be the gateway's origin.
func (d *DevLogin) sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != d.origin {
		return false
	}
	return true
}

func (d *DevLogin) post(w http.ResponseWriter, r *http.Request) {
	if !d.sameOrigin(r) {
		http.Error(w, "development login: cross-site request refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "development login: malformed form", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	data := devPageData{Action: d.publicURL + DevLoginPath, State: f.Get("state"), Nonce: f.Get("nonce"),
		Challenge: f.Get("code_challenge"), Name: strings.TrimSpace(f.Get("name")), Email: strings.TrimSpace(f.Get("email"))}
	if !validParam(data.State) || !validParam(data.Nonce) || !validParam(data.Challenge) {
		http.Error(w, "development login: missing or malformed state, nonce or code_challenge", http.StatusBadRequest)
		return
	}
	if err := checkDevField(data.Name, true); err != nil {
		data.Error = "Name: " + err.Error()
		d.render(w, http.StatusBadRequest, data)
		return
	}
	if err := checkDevField(data.Email, false); err != nil || (data.Email != "" && !strings.Contains(data.Email, "@")) {
		data.Error = "E-mail: enter an address like name@example.com"
		d.render(w, http.StatusBadRequest, data)
		return
	}
	code, err := d.issueCode(devUser(d.issuer, data.Name, data.Email), data.Challenge, data.Nonce)
	if err != nil {
		http.Error(w, "development login: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	q := url.Values{"code": {code}, "state": {data.State}}
	http.Redirect(w, r, d.publicURL+CallbackPath+"?"+q.Encode(), http.StatusSeeOther)
}

func checkDevField(s string, required bool) error {
	if s == "" {
		if required {
			return errors.New("required")
		}
		return nil
	}
	if utf8.RuneCountInString(s) > devMaxField {
		return errors.New("too long")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return errors.New("control characters are not allowed")
		}
	}
	return nil
}

// devUser builds the identity for a dev sign-in: the object id is "dev-" plus a stable hash
// of the name.
func devUser(issuer, name, email string) identity.User {
	sum := sha256.Sum256([]byte("mcpgate-dev-login\x00" + strings.ToLower(name)))
	id := "dev-" + hex.EncodeToString(sum[:12])
	username := email
	if username == "" {
		username = name
	}
	return identity.User{Subject: id, ObjectID: id, Issuer: issuer, Name: name, Username: username, Email: email}
}

func (d *DevLogin) issueCode(u identity.User, challenge, nonce string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	code := base64.RawURLEncoding.EncodeToString(b)
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for k, c := range d.codes {
		if now.After(c.exp) {
			delete(d.codes, k)
		}
	}
	if len(d.codes) >= devMaxCodes {
		return "", errors.New("too many pending sign-ins")
	}
	d.codes[code] = devCode{user: u, challenge: challenge, nonce: nonce, exp: now.Add(devCodeTTL)}
	return code, nil
}

// Exchange redeems a code from the dev login page (single use, 5 minutes), checking the PKCE
// verifier and the nonce like a real IdP.
func (d *DevLogin) Exchange(_ context.Context, code, verifier, nonce string) (identity.User, identity.Tokens, error) {
	d.mu.Lock()
	c, ok := d.codes[code]
	delete(d.codes, code)
	d.mu.Unlock()
	if !ok || d.now().After(c.exp) {
		return identity.User{}, identity.Tokens{}, &Error{Code: "invalid_grant", Description: "unknown or expired development login code"}
	}
	if subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(c.challenge)) != 1 {
		return identity.User{}, identity.Tokens{}, &Error{Code: "invalid_grant", Description: "PKCE verifier does not match"}
	}
	if subtle.ConstantTimeCompare([]byte(nonce), []byte(c.nonce)) != 1 {
		return identity.User{}, identity.Tokens{}, &Error{Code: "invalid_id_token", Description: "nonce does not match"}
	}
	t, err := d.tokens(c.user)
	return c.user, t, err
}

// Refresh issues new development tokens for the identity in the old ID token.
func (d *DevLogin) Refresh(_ context.Context, old identity.Tokens) (identity.User, identity.Tokens, error) {
	u, err := UnverifiedUser(old.IDToken)
	if err != nil || u.Subject == "" || u.Issuer != d.issuer || old.RefreshToken == "" {
		return identity.User{}, identity.Tokens{}, &Error{Code: "invalid_grant", Description: "not a development login session"}
	}
	t, err := d.tokens(u)
	return u, t, err
}

// tokens makes opaque random access and refresh tokens and an unsigned ID token (alg none)
// carrying the identity; they live only in the gateway's encrypted session store.
func (d *DevLogin) tokens(u identity.User) (identity.Tokens, error) {
	b := make([]byte, 64)
	if _, err := rand.Read(b); err != nil {
		return identity.Tokens{}, fmt.Errorf("upstream: random: %w", err)
	}
	now := d.now()
	claims, err := json.Marshal(map[string]any{"iss": u.Issuer, "sub": u.Subject, "oid": u.ObjectID,
		"name": u.Name, "preferred_username": u.Username, "email": u.Email, "iat": now.Unix(),
		"exp": now.Add(devTokenLife).Unix(), "aud": "mcpgate-dev"})
	if err != nil {
		return identity.Tokens{}, fmt.Errorf("upstream: dev ID token: %w", err)
	}
	enc := base64.RawURLEncoding
	idt := enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(claims) + "."
	return identity.Tokens{AccessToken: "dev." + enc.EncodeToString(b[:32]), RefreshToken: "dev." + enc.EncodeToString(b[32:]),
		IDToken: idt, Expiry: now.Add(devTokenLife)}, nil
}

var (
	_ Provider = (*OIDC)(nil)
	_ Provider = (*DevLogin)(nil)
)
