package oauth

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ForwardedClientIP returns a Config.ClientIP for a gateway behind trustedProxies reverse
// proxies that each append the address they received the request from to X-Forwarded-For
// (Azure Container Apps' ingress is one). It takes the address trustedProxies entries from
// the right — the last one a trusted proxy wrote; anything left of it is client-supplied and
// ignored — and falls back to the connection's address when the header is missing, too short
// or malformed. trustedProxies ≤ 0 means no proxy: the connection's address.
func ForwardedClientIP(trustedProxies int) func(*http.Request) string {
	return func(r *http.Request) string {
		if trustedProxies <= 0 {
			return remoteIP(r)
		}
		var hops []string
		for _, h := range r.Header.Values("X-Forwarded-For") {
			for part := range strings.SplitSeq(h, ",") {
				hops = append(hops, strings.TrimSpace(part))
			}
		}
		if len(hops) < trustedProxies {
			return remoteIP(r)
		}
		cand := hops[len(hops)-trustedProxies]
		if host, _, err := net.SplitHostPort(cand); err == nil {
			cand = host
		}
		addr, err := netip.ParseAddr(strings.Trim(cand, "[]"))
		if err != nil {
			return remoteIP(r)
		}
		return addr.Unmap().String()
	}
}
