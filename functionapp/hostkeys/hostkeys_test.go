package hostkeys_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/functionapp/hostkeys"
)

const (
	master   = "master-key-0123456789"
	hostFn   = "host-function-key-abc"
	sysKey   = "system-key-xyz"
	fnKey    = "mcp-function-key-def"
	otherKey = "other-function-key-ghi"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func hostFile(fnKeys ...string) hostkeys.HostSecrets {
	s := hostkeys.HostSecrets{
		MasterKey:  &hostkeys.Key{Name: "master", Value: master},
		SystemKeys: []hostkeys.Key{{Name: "mcp_extension", Value: sysKey}},
	}
	for i, k := range fnKeys {
		s.FunctionKeys = append(s.FunctionKeys, hostkeys.Key{Name: "k" + string(rune('0'+i)), Value: k})
	}
	return s
}

func setup(t *testing.T) (string, *hostkeys.Checker, http.Handler) {
	t.Helper()
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "host.json"), hostFile(hostFn))
	writeJSON(t, filepath.Join(dir, "mcp.json"), hostkeys.FunctionSecrets{Keys: []hostkeys.Key{{Name: "default", Value: fnKey}}})
	writeJSON(t, filepath.Join(dir, "other.json"), hostkeys.FunctionSecrets{Keys: []hostkeys.Key{{Name: "default", Value: otherKey}}})
	c := hostkeys.NewChecker(dir, hostkeys.Options{Function: "mcp", Logger: quiet()})
	h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	return dir, c, h
}

type req struct {
	header []string // nil: no header; otherwise its values
	query  string
}

func do(h http.Handler, q req) (int, string) {
	r := httptest.NewRequest(http.MethodPost, "/mcp"+q.query, nil)
	if q.header != nil {
		r.Header[http.CanonicalHeaderKey("x-functions-key")] = q.header
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

func TestKeyCheckTable(t *testing.T) {
	_, _, h := setup(t)
	tests := []struct {
		name string
		req  req
		want int
	}{
		{"missing key", req{}, 401},
		{"host function key in header", req{header: []string{hostFn}}, 200},
		{"function's own key in header", req{header: []string{fnKey}}, 200},
		{"master key accepted", req{header: []string{master}}, 200},
		{"system key refused", req{header: []string{sysKey}}, 401},
		{"system key in code refused", req{query: "?code=" + sysKey}, 401},
		{"another function's key refused", req{header: []string{otherKey}}, 401},
		{"wrong key", req{header: []string{"nope"}}, 401},
		{"prefix of a key", req{header: []string{hostFn[:len(hostFn)-1]}}, 401},
		{"key plus suffix", req{header: []string{hostFn + "x"}}, 401},
		{"case differs", req{header: []string{strings.ToUpper(hostFn)}}, 401},
		{"code query accepted", req{query: "?code=" + hostFn}, 200},
		{"first code value wins", req{query: "?code=" + hostFn + "&code=nope"}, 200},
		{"second code value ignored", req{query: "?code=nope&code=" + hostFn}, 401},
		{"header wins over valid code", req{header: []string{"nope"}, query: "?code=" + hostFn}, 401},
		{"empty header with valid code", req{header: []string{""}, query: "?code=" + hostFn}, 401},
		{"valid header with wrong code", req{header: []string{fnKey}, query: "?code=nope"}, 200},
		{"first header value wins", req{header: []string{hostFn, "nope"}}, 200},
		{"second header value ignored", req{header: []string{"nope", hostFn}}, 401},
		{"empty code", req{query: "?code="}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(h, tt.req)
			if code != tt.want {
				t.Fatalf("status %d, want %d", code, tt.want)
			}
			if code == 401 && body != "" {
				t.Fatalf("401 body %q, want empty", body)
			}
		})
	}
}

func TestLevels(t *testing.T) {
	_, c, _ := setup(t)
	for key, want := range map[string]hostkeys.Level{
		master: hostkeys.Admin, sysKey: hostkeys.System, hostFn: hostkeys.Function, fnKey: hostkeys.Function,
		otherKey: hostkeys.Anonymous, "": hostkeys.Anonymous,
	} {
		if got := c.Level(key); got != want {
			t.Errorf("Level(%s) = %v, want %v", key, got, want)
		}
	}
}

func TestRotationWhileRunning(t *testing.T) {
	dir, _, h := setup(t)
	// Default interval (1 s): a new key must still work at once, because a miss re-checks.
	const newKey = "brand-new-key-000"
	if code, _ := do(h, req{header: []string{newKey}}); code != 401 {
		t.Fatalf("unknown key: %d", code)
	}
	writeJSON(t, filepath.Join(dir, "host.json"), hostFile(hostFn, newKey))
	if code, _ := do(h, req{header: []string{newKey}}); code != 200 {
		t.Fatalf("just-added key: %d, want 200", code)
	}
	// The function's own file rotates too.
	writeJSON(t, filepath.Join(dir, "mcp.json"), hostkeys.FunctionSecrets{Keys: []hostkeys.Key{{Name: "default", Value: "fn-rotated"}}})
	if code, _ := do(h, req{query: "?code=fn-rotated"}); code != 200 {
		t.Fatalf("rotated function key: %d", code)
	}
}

func TestRemovedKeyRefused(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "host.json"), hostFile(hostFn, "old-key"))
	c := hostkeys.NewChecker(dir, hostkeys.Options{Interval: -1, Logger: quiet()})
	h := c.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	if code, _ := do(h, req{header: []string{"old-key"}}); code != 200 {
		t.Fatalf("old key before removal: %d", code)
	}
	writeJSON(t, filepath.Join(dir, "host.json"), hostFile(hostFn))
	if code, _ := do(h, req{header: []string{"old-key"}}); code != 401 {
		t.Fatalf("removed key: %d, want 401", code)
	}
	// In-place rewrite (same inode, different size) is noticed too.
	if err := os.WriteFile(filepath.Join(dir, "host.json"), mustJSON(t, hostFile("in-place-key-1")), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _ := do(h, req{header: []string{hostFn}}); code != 401 {
		t.Fatalf("key removed by in-place rewrite: %d, want 401", code)
	}
	if code, _ := do(h, req{header: []string{"in-place-key-1"}}); code != 200 {
		t.Fatalf("key added by in-place rewrite: %d", code)
	}
}

func TestRemovedKeyRefusedAfterInterval(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "host.json"), hostFile(hostFn, "old-key"))
	c := hostkeys.NewChecker(dir, hostkeys.Options{Interval: 20 * time.Millisecond, Logger: quiet()})
	if c.Level("old-key") != hostkeys.Function {
		t.Fatal("old key not accepted")
	}
	writeJSON(t, filepath.Join(dir, "host.json"), hostFile(hostFn))
	deadline := time.Now().Add(5 * time.Second)
	for c.Level("old-key") != hostkeys.Anonymous {
		if time.Now().After(deadline) {
			t.Fatal("removed key still accepted after 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFailClosed(t *testing.T) {
	dir, _, h := setup(t)
	for name, content := range map[string]string{
		"broken JSON":   "{",
		"encrypted key": `{"masterKey":{"name":"master","value":"` + master + `","encrypted":true},"functionKeys":[{"name":"x","value":"` + hostFn + `","encrypted":false}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "host.json"), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			// Even a key of the intact mcp.json is refused while host.json is unusable.
			if code, _ := do(h, req{header: []string{fnKey}}); code != 401 {
				t.Fatalf("status %d with an unusable key file, want 401", code)
			}
		})
	}
	writeJSON(t, filepath.Join(dir, "host.json"), hostFile(hostFn))
	if code, _ := do(h, req{header: []string{hostFn}}); code != 200 {
		t.Fatalf("after repair: %d", code)
	}
}

func TestNoFilesRefusesEverything(t *testing.T) {
	c := hostkeys.NewChecker(t.TempDir(), hostkeys.Options{Logger: quiet()})
	if l := c.Level("anything"); l != hostkeys.Anonymous {
		t.Fatalf("Level = %v", l)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnsureSecrets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	path, created, err := hostkeys.EnsureSecrets(dir, "mcp")
	if err != nil || !created || path != filepath.Join(dir, "host.json") {
		t.Fatalf("EnsureSecrets = %q, %v, %v", path, created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v, %v", fi.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	hs, err := hostkeys.ParseHostSecrets(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs.FunctionKeys) != 1 || hs.FunctionKeys[0].Name != hostkeys.DefaultKeyName || hs.FunctionKeys[0].Encrypted {
		t.Fatalf("function keys: %+v", hs.FunctionKeys)
	}
	k := hs.FunctionKeys[0].Value
	if raw, err := base64.URLEncoding.DecodeString(k); len(k) != 56 || err != nil || len(raw) != 40 {
		t.Fatalf("generated key has the wrong shape (len %d, %v)", len(k), err)
	}
	c := hostkeys.NewChecker(dir, hostkeys.Options{Logger: quiet()})
	if c.Level(k) != hostkeys.Function {
		t.Fatal("generated key not accepted")
	}
	// A second call keeps the existing file.
	if _, created, err := hostkeys.EnsureSecrets(dir, "mcp"); err != nil || created {
		t.Fatalf("second EnsureSecrets: created=%v err=%v", created, err)
	}
	again, _ := os.ReadFile(path)
	if string(again) != string(data) {
		t.Fatal("existing key file rewritten")
	}
}

func TestNewKeyUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k := hostkeys.NewKey()
		if seen[k] || len(k) != 56 {
			t.Fatalf("bad key: len %d, duplicate %v", len(k), seen[k])
		}
		seen[k] = true
	}
}

func FuzzParseSecrets(f *testing.F) {
	f.Add([]byte(`{"masterKey":{"name":"master","value":"m","encrypted":false},"functionKeys":[{"name":"a","value":"b","encrypted":false}],"systemKeys":[]}`))
	f.Add([]byte(`{"keys":[{"name":"default","value":"v","encrypted":true}]}`))
	f.Add([]byte(`{"functionKeys":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if hs, err := hostkeys.ParseHostSecrets(data); err == nil {
			for _, k := range hs.FunctionKeys {
				if k.Encrypted {
					t.Fatal("encrypted host key accepted")
				}
			}
		}
		if fs, err := hostkeys.ParseFunctionSecrets(data); err == nil {
			for _, k := range fs.Keys {
				if k.Encrypted {
					t.Fatal("encrypted function key accepted")
				}
			}
		}
	})
}

func FuzzRequestKey(f *testing.F) {
	f.Add("code=abc", "", false)
	f.Add("code=%zz&code=x", "k", true)
	f.Fuzz(func(t *testing.T, rawQuery, header string, hasHeader bool) {
		u := url.URL{Path: "/mcp", RawQuery: rawQuery}
		r := &http.Request{Header: http.Header{}, URL: &u}
		if hasHeader {
			r.Header.Set("x-functions-key", header)
		}
		got := hostkeys.RequestKey(r)
		if hasHeader && got != header {
			t.Fatalf("header present: got %q, want the header %q", got, header)
		}
		if !hasHeader && got != u.Query().Get("code") {
			t.Fatalf("no header: got %q", got)
		}
	})
}
