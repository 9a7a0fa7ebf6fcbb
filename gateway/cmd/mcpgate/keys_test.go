package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeysFlagsOfTheHooks parses the exact command lines of infra/hooks (postdeploy and
// postprovision) without running them.
func TestKeysFlagsOfTheHooks(t *testing.T) {
	args := []string{"--subscription", "sub", "--resource-group", "rg", "--app", "func", "--keyvault-url", "https://kv.vault.azure.net",
		"--secret", "function-key", "--gateway-url", "https://gw.example", "--if-missing"}
	f, err := parseKeysFlags("rotate", args, io.Discard)
	if err != nil || !f.ifMissing || f.secret != "function-key" || f.keyName != "gateway" || f.functionURL != "" {
		t.Fatalf("postdeploy flags: %v %+v", err, f)
	}
	var errb bytes.Buffer
	for _, bad := range [][]string{
		{"--app", "x"}, // no subscription / group
		{"--local", "d", "--app", "x"},
		{"--subscription", "s", "--resource-group", "g", "--app", "a"},                                             // no publishing target
		{"--subscription", "s", "--resource-group", "g", "--app", "a", "--secret", "s"},                            // secret without vault
		{"--subscription", "s", "--resource-group", "g", "--app", "a", "--key-file", "f", "--key-name", "_master"}, // master key
	} {
		errb.Reset()
		if code := run(context.Background(), append([]string{"keys", "rotate"}, bad...), io.Discard, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)\n%s", bad, code, errb.String())
		}
	}
	if code := run(context.Background(), []string{"keys"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("keys without a subcommand: exit %d", code)
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"keys", "--help"}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "rotate") {
		t.Errorf("keys --help: exit %d", code)
	}
}

// TestKeysRotateLocalCommand runs `keys rotate --local` and `keys list` end to end against a
// host.json, a key file and a function app that checks host.json; no gateway URL: the old
// key is kept and reported.
func TestKeysRotateLocalCommand(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "secrets", "host.json")
	if err := os.MkdirAll(filepath.Dir(host), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(host, []byte(`{"masterKey":{"name":"master","value":"M","encrypted":false},"functionKeys":[{"name":"gateway","value":"OLDKEYVALUE","encrypted":false}],"systemKeys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "function-key")
	if err := os.WriteFile(keyFile, []byte("OLDKEYVALUE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fa := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := os.ReadFile(host)
		if k := r.Header.Get("x-functions-key"); k == "" || !strings.Contains(string(b), `"`+k+`"`) {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer fa.Close()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"keys", "rotate", "--local", filepath.Dir(host), "--key-file", keyFile,
		"--function-url", fa.URL, "--gateway-url", "", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errb.String())
	}
	var res struct {
		Action string   `json:"action"`
		NewKey string   `json:"new_key"`
		Kept   []string `json:"kept"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Action != "rotated" || len(res.Kept) != 1 || res.Kept[0] != "gateway" {
		t.Fatalf("%v %s", err, out.String())
	}
	pub, _ := os.ReadFile(keyFile)
	if string(pub) == "OLDKEYVALUE\n" || strings.Contains(errb.String(), strings.TrimSpace(string(pub))) || !strings.Contains(errb.String(), "no gateway URL") {
		t.Fatalf("progress:\n%s", errb.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"keys", "list", "--local", host, "--key-file", keyFile}, &out, io.Discard); code != 0 {
		t.Fatalf("list: exit %d", code)
	}
	if !strings.Contains(out.String(), res.NewKey) || !strings.Contains(out.String(), "yes") || strings.Contains(out.String(), "OLDKEYVALUE") {
		t.Fatalf("list:\n%s", out.String())
	}
}

// TestSecretsCommands: generate (idempotent), list, rotate (add next; too early), generate
// --force with its warning.
func TestSecretsCommands(t *testing.T) {
	ring := filepath.Join(t.TempDir(), "ring.json")
	var out, errb bytes.Buffer
	runOK := func(args ...string) string {
		t.Helper()
		out.Reset()
		errb.Reset()
		if code := run(context.Background(), append([]string{"secrets"}, args...), &out, &errb); code != 0 {
			t.Fatalf("secrets %v: exit %d\n%s", args, code, errb.String())
		}
		return out.String()
	}
	if s := runOK("generate", "--file", ring); !strings.Contains(s, "created") {
		t.Fatal(s)
	}
	first, _ := os.ReadFile(ring)
	if s := runOK("generate", "--file", ring); !strings.Contains(s, "left unchanged") {
		t.Fatal(s)
	}
	if again, _ := os.ReadFile(ring); !bytes.Equal(first, again) {
		t.Fatal("generate replaced an existing ring")
	}
	if s := runOK("rotate", "--file", ring); !strings.Contains(s, "added next key") {
		t.Fatal(s)
	}
	if code := run(context.Background(), []string{"secrets", "rotate", "--file", ring}, io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), "too early") {
		t.Fatalf("second rotate: exit %d %s", code, errb.String())
	}
	s := runOK("list", "--file", ring, "--json")
	if strings.Contains(s, `"key"`) || !strings.Contains(s, `"next"`) || !strings.Contains(s, `"active"`) {
		t.Fatalf("list: %s", s)
	}
	runOK("generate", "--file", ring, "--force")
	if !strings.Contains(errb.String(), "WARNING") {
		t.Fatalf("--force without a warning: %s", errb.String())
	}
	if code := run(context.Background(), []string{"secrets", "generate", "--keyvault-url", "https://x.vault.azure.net"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("--keyvault-url without --secret: exit %d", code)
	}
}
