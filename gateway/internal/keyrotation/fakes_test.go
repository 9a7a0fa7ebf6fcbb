package keyrotation_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/mcpgate/mcpgate/gateway/internal/funckey"
	"github.com/mcpgate/mcpgate/gateway/internal/keyrotation"
	"github.com/mcpgate/mcpgate/gateway/internal/secretsrc/kvtest"
)

// armAPIVersion is the api-version armappservice v5.1.0 sends (webapps_client.go).
const armAPIVersion = "2025-03-01"

const (
	testSub   = "00000000-0000-0000-0000-0000000000aa"
	testGroup = "rg-mcpgate"
	testApp   = "func-mcpgate"
	sitePath  = "/subscriptions/" + testSub + "/resourceGroups/" + testGroup + "/providers/Microsoft.Web/sites/" + testApp
)

// fakeARM speaks the ARM REST contract of a function app's host keys (Microsoft.Web
// WebApps_ListHostKeys / CreateOrUpdateHostSecret / DeleteHostSecret, api-version
// 2025-03-01): POST …/host/default/listkeys → 200 HostKeys; PUT
// …/host/default/functionKeys/{name} with {"name"[, "value"]} → 201 (new) or 200 (updated)
// with KeyInfo {"name","value"}, the value generated when none is given; DELETE → 204, or 404
// for a key that does not exist. fail makes the next request matching "METHOD suffix" answer
// with a status instead.
type fakeARM struct {
	t      *testing.T
	mu     sync.Mutex
	master string
	keys   map[string]string
	log    []string
	fail   map[string]int
}

func newFakeARM(t *testing.T, keys map[string]string) *fakeARM {
	return &fakeARM{t: t, master: newValue(t), keys: keys, fail: map[string]int{}}
}

func newValue(testing.TB) string {
	b := make([]byte, 40)
	_, _ = rand.Read(b)
	return base64.URLEncoding.EncodeToString(b)
}

func armError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": "fake ARM: " + code}})
}

func (a *fakeARM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rest, ok := strings.CutPrefix(r.URL.Path, sitePath+"/host/default/")
	entry := r.Method + " " + rest
	a.log = append(a.log, entry)
	switch {
	case r.Header.Get("Authorization") != "Bearer "+kvtest.Token:
		armError(w, http.StatusUnauthorized, "AuthenticationFailed")
		return
	case r.URL.Query().Get("api-version") != armAPIVersion:
		armError(w, http.StatusBadRequest, "InvalidApiVersionParameter")
		return
	case !ok:
		armError(w, http.StatusNotFound, "ResourceNotFound")
		return
	}
	if st, bad := a.fail[entry]; bad {
		delete(a.fail, entry)
		armError(w, st, "InjectedFailure")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && rest == "listkeys":
		_ = json.NewEncoder(w).Encode(map[string]any{"masterKey": a.master, "functionKeys": a.keys, "systemKeys": map[string]string{}})
	case r.Method == http.MethodPut && strings.HasPrefix(rest, "functionKeys/"):
		name := strings.TrimPrefix(rest, "functionKeys/")
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body["name"] != name {
			armError(w, http.StatusBadRequest, "BadRequest")
			return
		}
		v, _ := body["value"].(string)
		if v == "" {
			v = newValue(a.t)
		}
		_, existed := a.keys[name]
		a.keys[name] = v
		if !existed {
			w.WriteHeader(http.StatusCreated)
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"name": name, "value": v})
	case r.Method == http.MethodDelete && strings.HasPrefix(rest, "functionKeys/"):
		name := strings.TrimPrefix(rest, "functionKeys/")
		if _, ok := a.keys[name]; !ok {
			armError(w, http.StatusNotFound, "NotFound")
			return
		}
		delete(a.keys, name)
		w.WriteHeader(http.StatusNoContent)
	default:
		armError(w, http.StatusMethodNotAllowed, "MethodNotAllowed")
	}
}

// requests returns and clears the request log.
func (a *fakeARM) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.log
	a.log = nil
	return l
}

func (a *fakeARM) snapshot() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]string, len(a.keys))
	for k, v := range a.keys {
		out[k] = v
	}
	return out
}

func (a *fakeARM) failNext(entry string, status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail[entry] = status
}

// accepts reports whether key is a host function key or the master key (the host's rule for
// a function-level route).
func (a *fakeARM) accepts(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if key == a.master {
		return true
	}
	for _, v := range a.keys {
		if v == key {
			return true
		}
	}
	return false
}

// startARM serves a on a TLS server and returns host keys talking to it.
func startARM(t *testing.T, a *fakeARM) *keyrotation.ARMHostKeys {
	srv := httptest.NewTLSServer(a)
	t.Cleanup(srv.Close)
	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: "https://login.invalid/",
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: srv.URL, Audience: "https://management.core.windows.net/"},
			},
		},
		Transport: srv.Client(),
		Retry:     policy.RetryOptions{MaxRetries: -1}, // count requests exactly
	}}
	hk, err := keyrotation.NewARMHostKeys(testSub, testGroup, testApp, &kvtest.Cred{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return hk
}

// fakeFunctionApp answers any request with 200 for a key the ARM fake knows, 401 otherwise.
func fakeFunctionApp(t *testing.T, a *fakeARM) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.accepts(r.Header.Get("x-functions-key")) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// fakeGateway serves /readyz?replicas=1 for two replicas that use the published key (or,
// while stuck, the key they had when stuck was set).
type fakeGateway struct {
	pub   keyrotation.Secret
	mu    sync.Mutex
	stuck string // fingerprint reported by replica b while non-empty
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/readyz" || r.URL.Query().Get("replicas") != "1" {
		http.NotFound(w, r)
		return
	}
	fp := ""
	if b, err := g.pub.Get(r.Context()); err == nil {
		fp = funckey.Fingerprint(strings.TrimSpace(string(b)))
	}
	g.mu.Lock()
	fpb := fp
	if g.stuck != "" {
		fpb = g.stuck
	}
	g.mu.Unlock()
	now := time.Now().UTC()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": fp != "", "replica": "gw-a", "reasons": []string{},
		"replicas": []map[string]any{{"id": "gw-a", "key_fingerprint": fp, "time": now, "ready": fp != ""}, {"id": "gw-b", "key_fingerprint": fpb, "time": now, "ready": fpb != ""}}})
}

func (g *fakeGateway) setStuck(fp string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stuck = fp
}

// http401 refuses every request like a host that does not know the key.
func http401() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
}
