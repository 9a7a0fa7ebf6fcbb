package landing

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLandingPage(t *testing.T) {
	h, err := Handler(Info{PublicURL: "https://mcp.example.com/", DevLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, "https://mcp.example.com/mcp") || !strings.Contains(body, "Development mode") {
		t.Fatalf("status %d body %s", rec.Code, body)
	}
	if rec.Header().Get("X-Frame-Options") != "DENY" || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("missing frame protection: %v", rec.Header())
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/nope", 404},
		{http.MethodPost, "/", 405},
		{http.MethodHead, "/", 200},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("%s %s: got %d want %d", tc.method, tc.path, rec.Code, tc.want)
		}
	}
	h2, _ := Handler(Info{PublicURL: "http://127.0.0.1:8000"})
	rec = httptest.NewRecorder()
	h2.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if strings.Contains(rec.Body.String(), "Development mode") {
		t.Fatal("dev banner shown without dev login")
	}
}
