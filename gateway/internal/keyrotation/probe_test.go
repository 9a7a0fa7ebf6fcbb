package keyrotation

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestProbeFunctionApp classifies the function app's answers to the probe.
func TestProbeFunctionApp(t *testing.T) {
	for status, want := range map[int]Acceptance{200: Accepted, 400: Accepted, 405: Accepted, 401: Refused, 404: Refused, 503: Refused, 403: Unreachable} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != ProbePath || r.Header.Get("x-functions-key") != "k" {
				w.WriteHeader(http.StatusTeapot)
				return
			}
			w.WriteHeader(status)
		}))
		got, _ := ProbeFunctionApp(t.Context(), srv.Client(), srv.URL, "k")
		srv.Close()
		if got != want {
			t.Errorf("status %d: %v, want %v", status, got, want)
		}
	}
	if got, err := ProbeFunctionApp(t.Context(), http.DefaultClient, "http://127.0.0.1:1", "k"); got != Unreachable || err == nil {
		t.Errorf("no answer: %v %v", got, err)
	}
}
