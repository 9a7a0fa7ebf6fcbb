package oauth

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestForwardedClientIP(t *testing.T) {
	for _, tc := range []struct {
		hops   int
		xff    []string
		remote string
		want   string
	}{
		{0, []string{"1.2.3.4"}, "10.0.0.1:5", "10.0.0.1"},
		{1, nil, "10.0.0.1:5", "10.0.0.1"},
		{1, []string{"1.2.3.4"}, "10.0.0.1:5", "1.2.3.4"},
		{1, []string{"6.6.6.6, 1.2.3.4"}, "10.0.0.1:5", "1.2.3.4"}, // spoofed left part ignored
		{1, []string{"6.6.6.6", "1.2.3.4"}, "10.0.0.1:5", "1.2.3.4"},
		{2, []string{"6.6.6.6, 1.2.3.4, 10.1.1.1"}, "10.0.0.1:5", "1.2.3.4"},
		{2, []string{"1.2.3.4"}, "10.0.0.1:5", "10.0.0.1"},
		{1, []string{"not-an-ip"}, "10.0.0.1:5", "10.0.0.1"},
		{1, []string{"[2001:db8::1]:443"}, "10.0.0.1:5", "2001:db8::1"},
		{1, []string{"::ffff:1.2.3.4"}, "10.0.0.1:5", "1.2.3.4"},
		{1, []string{"1.2.3.4:80"}, "10.0.0.1:5", "1.2.3.4"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := ForwardedClientIP(tc.hops)(r); got != tc.want {
			t.Errorf("hops %d xff %q: %q, want %q", tc.hops, tc.xff, got, tc.want)
		}
	}
}

// FuzzForwardedClientIP: any header gives a parseable address or the connection's.
func FuzzForwardedClientIP(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "a, b, c", "[::1]:1", "", ",,,", "1.2.3.4, ::ffff:5.6.7.8"} {
		f.Add(s, 1)
	}
	f.Fuzz(func(t *testing.T, xff string, hops int) {
		if strings.ContainsAny(xff, "\r\n") {
			return
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "10.0.0.1:5"
		r.Header.Set("X-Forwarded-For", xff)
		got := ForwardedClientIP(hops % 5)(r)
		if got == "" || strings.ContainsAny(got, ", ") {
			t.Fatalf("%q → %q", xff, got)
		}
	})
}
