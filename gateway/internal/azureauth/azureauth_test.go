package azureauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// identityEndpoint is a local managed-identity endpoint with the App Service / Container Apps
// contract (IDENTITY_ENDPOINT + IDENTITY_HEADER, api-version 2019-08-01) that issues
// JWT-shaped tokens. onIssue runs before each token is returned.
type identityEndpoint struct {
	srv      *httptest.Server
	secret   string
	lifetime time.Duration
	oid      string
	onIssue  func(resource, token string) error
	clientID string

	mu       sync.Mutex
	requests []http.Request
	issued   []string
}

// newClientID returns a fresh client id for a user-assigned identity. MSAL caches
// managed-identity tokens per process, identity and resource, so every test (and every
// repetition under -count) needs its own identity, or it gets another run's cached token.
func newClientID(t *testing.T) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func newIdentityEndpoint(t *testing.T, lifetime time.Duration, clientID string) *identityEndpoint {
	t.Helper()
	ie := &identityEndpoint{secret: "identity-header-secret", lifetime: lifetime, oid: "6a0b2f8c-1111-4e2d-9c3b-7d8e9f0a1b2c", clientID: clientID}
	ie.srv = httptest.NewServer(http.HandlerFunc(ie.serve))
	t.Cleanup(ie.srv.Close)
	// azidentity reads these when a credential is created (App Service contract).
	t.Setenv("IDENTITY_ENDPOINT", ie.srv.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", ie.secret)
	for _, k := range []string{"IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "AZURE_CLIENT_ID"} {
		t.Setenv(k, "")
	}
	return ie
}

func (ie *identityEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ie.mu.Lock()
	ie.requests = append(ie.requests, *r.Clone(context.Background()))
	n := len(ie.issued)
	ie.mu.Unlock()
	if r.Method != http.MethodGet || r.URL.Path != "/msi/token" || r.Header.Get("X-IDENTITY-HEADER") != ie.secret ||
		q.Get("api-version") != "2019-08-01" || q.Get("client_id") != ie.clientID || q.Get("resource") == "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_request","error_description":"unexpected managed identity request"}`))
		return
	}
	exp := time.Now().Add(ie.lifetime).Unix()
	tok := jwtShaped(map[string]any{"aud": q.Get("resource"), "oid": ie.oid, "exp": exp, "n": n,
		"iss": "https://sts.windows.net/tenant/", "appid": ie.clientID})
	if ie.onIssue != nil {
		if err := ie.onIssue(q.Get("resource"), tok); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	ie.mu.Lock()
	ie.issued = append(ie.issued, tok)
	ie.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "expires_on": strconv.FormatInt(exp, 10),
		"resource": q.Get("resource"), "token_type": "Bearer", "client_id": ie.clientID})
}

func (ie *identityEndpoint) issuedCount() int {
	ie.mu.Lock()
	defer ie.mu.Unlock()
	return len(ie.issued)
}

func jwtShaped(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(c) + "." + enc([]byte("not-a-real-signature"))
}

// TestClientAssertionFromManagedIdentity: the federated credential's assertion is the managed
// identity's token for api://AzureADTokenExchange, fetched with the user-assigned client id.
func TestClientAssertionFromManagedIdentity(t *testing.T) {
	clientID := newClientID(t)
	ie := newIdentityEndpoint(t, time.Hour, clientID)
	cred, err := ManagedIdentity(clientID)
	if err != nil {
		t.Fatal(err)
	}
	assert := ClientAssertion(cred, "")
	a, err := assert(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ie.issuedCount() != 1 || a != ie.issued[0] {
		t.Fatalf("assertion is not the issued token")
	}
	if got := ie.requests[0].URL.Query().Get("resource"); got != "api://AzureADTokenExchange" {
		t.Errorf("resource = %q", got)
	}
	// An hour-long token is cached: a second assertion costs no request.
	if _, err := assert(t.Context()); err != nil || len(ie.requests) != 1 {
		t.Errorf("second assertion: %v, %d requests", err, len(ie.requests))
	}

	// A wrong client id: the endpoint refuses and the error says what failed.
	other, err := ManagedIdentity("00000000-0000-0000-0000-000000000000")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ClientAssertion(other, TokenExchangeScopeUSGov)(t.Context()); err == nil || !strings.Contains(err.Error(), "federated credential") {
		t.Fatalf("refused assertion: %v", err)
	}
}

func TestWorkloadPicksManagedIdentityByClientID(t *testing.T) {
	clientID := newClientID(t)
	ie := newIdentityEndpoint(t, time.Hour, clientID)
	cred, err := Workload(func(k string) string {
		if k == "AZURE_CLIENT_ID" {
			return clientID
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ClientAssertion(cred, "https://storage.azure.com/.default")(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := ie.requests[0].URL.Query().Get("resource"); got != "https://storage.azure.com" {
		t.Errorf("resource = %q", got)
	}
	if _, err := RedisCredentials(nil, RedisOptions{}); err == nil {
		t.Error("nil credential accepted")
	}
}

// startRedis runs a real redis-server on a free loopback port for the test.
func startRedis(t *testing.T) *redis.Client {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	admin := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	t.Cleanup(func() { _ = admin.Close() })
	for i := 0; ; i++ {
		if admin.Ping(t.Context()).Err() == nil {
			return admin
		}
		if i > 200 {
			t.Fatal("redis-server did not start")
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestRedisCredentialsReauthenticate runs go-redis-entraid against a real redis-server whose
// ACL user is the token's oid and whose only valid password is the latest token the identity
// endpoint issued (as in Azure Managed Redis, where an expired token ends the connection).
// Tokens live 3 s; the test shows the same connection re-authenticating (AUTH) with each new
// token, never failing one, and a new connection signing in with the current token.
func TestRedisCredentialsReauthenticate(t *testing.T) {
	redisClientID := newClientID(t)
	ie := newIdentityEndpoint(t, 3*time.Second, redisClientID)
	admin := startRedis(t)
	ie.onIssue = func(resource, tok string) error {
		if resource != "https://redis.azure.com" {
			return fmt.Errorf("resource %q", resource)
		}
		// Only the newest token is a valid password from now on.
		return admin.Do(context.Background(), "ACL", "SETUSER", ie.oid, "on", "resetpass", ">"+tok, "~*", "&*", "+@all").Err()
	}
	cred, err := ManagedIdentity(redisClientID)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := RedisCredentials(cred, RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: admin.Options().Addr, StreamingCredentialsProvider: cp, PoolSize: 1})
	defer rdb.Close()
	ctx := t.Context()

	if who, err := rdb.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != ie.oid {
		t.Fatalf("ACL WHOAMI = %q, %v; want the token's oid", who, err)
	}
	// New connections authenticate in their HELLO handshake; AUTH is sent only to
	// re-authenticate a live connection with a renewed token. Keep using the client until two
	// more tokens were issued and the server counted two AUTH commands, none failed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if who, err := rdb.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != ie.oid {
			t.Fatalf("command during renewal: %q, %v", who, err)
		}
		calls, failed := authStats(t, admin)
		if failed != 0 {
			log, _ := admin.Do(ctx, "ACL", "LOG").Slice()
			t.Fatalf("%d AUTH commands failed (ACL LOG %v)", failed, log)
		}
		if ie.issuedCount() >= 3 && calls >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no re-authentication: %d tokens issued, %d AUTH calls", ie.issuedCount(), calls)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if log, err := admin.Do(ctx, "ACL", "LOG").Slice(); err != nil || len(log) != 0 {
		t.Fatalf("ACL LOG = %v, %v; want no failed authentication", log, err)
	}
	// Every connection of the client, including a new one, is signed in as the oid with the
	// current token (the only valid password).
	if err := admin.Do(ctx, "CLIENT", "KILL", "USER", ie.oid).Err(); err != nil {
		t.Fatal(err)
	}
	for range 3 { // the first command after the kill may see a closed connection
		if err = rdb.Ping(ctx).Err(); err == nil {
			break
		}
	}
	if who, err := rdb.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != ie.oid {
		t.Fatalf("ACL WHOAMI after reconnect = %q, %v", who, err)
	}
}

// authStats returns the server's AUTH calls and failed calls (INFO commandstats).
func authStats(t *testing.T, admin *redis.Client) (calls, failed int) {
	t.Helper()
	info, err := admin.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_auth:")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.Atoi(v)
			switch k {
			case "calls":
				calls = n
			case "failed_calls", "rejected_calls":
				failed += n
			}
		}
	}
	return calls, failed
}
