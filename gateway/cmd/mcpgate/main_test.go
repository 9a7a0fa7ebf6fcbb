package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/session"
)

func TestUsageAndUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "serve") {
		t.Fatalf("--help: code %d out %q", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Fatalf("unknown: code %d err %q", code, errb.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"serve", "--no-such-flag"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "no-such-flag") {
		t.Fatalf("bad flag: code %d err %q", code, errb.String())
	}
}

func TestServeRefusesBadConfiguration(t *testing.T) {
	var out, errb bytes.Buffer
	// No identity provider configured: a clear message naming the fix, and no server.
	t.Setenv("MCPGATE_DEV_LOGIN", "")
	code := run(context.Background(), []string{"serve", "--listen", "127.0.0.1:0"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "--dev") {
		t.Fatalf("code %d err %q", code, errb.String())
	}
	errb.Reset()
	code = run(context.Background(), []string{"serve", "--dev", "--listen", "0.0.0.0:0"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "loopback") {
		t.Fatalf("dev on all interfaces: code %d err %q", code, errb.String())
	}
}

func TestConfigMarkdown(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"config", "--markdown"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "`MCPGATE_PUBLIC_URL`") {
		t.Fatalf("code %d out %q", code, out.String())
	}
}

func TestRingGuard(t *testing.T) {
	k, err := session.NewPendingKeeper(func(context.Context) ([]byte, error) { return nil, context.Canceled }, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := ringGuard(k, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/token", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "temporarily_unavailable") || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("pending ring: %d %s", rec.Code, rec.Body.String())
	}
	key, err := session.NewKey(session.StateActive, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ring, err := session.NewRing(key)
	if err != nil {
		t.Fatal(err)
	}
	h = ringGuard(session.NewStaticKeeper(ring), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/token", nil))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("loaded ring should pass through: %d", rec.Code)
	}
}
