// Package landing serves the page at the gateway's root: what this server is and how to
// connect an MCP client to it.
package landing

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"strings"
)

//go:embed page.html.tmpl
var files embed.FS

// Info is what the page shows.
type Info struct {
	// Name is the server's display name.
	Name string
	// PublicURL is the gateway's public origin.
	PublicURL string
	// DevLogin marks a gateway running the development login.
	DevLogin bool
}

type view struct {
	Info
	MCPURL, SSEURL, VSCodeJSON string
}

// Handler renders the landing page once and serves it for GET and HEAD on "/" exactly;
// any other path under "/" that nothing else claimed gets a plain 404.
func Handler(info Info) (http.Handler, error) {
	t, err := template.ParseFS(files, "page.html.tmpl")
	if err != nil {
		return nil, err
	}
	origin := strings.TrimRight(info.PublicURL, "/")
	if info.Name == "" {
		info.Name = "mcpgate"
	}
	v := view{Info: info, MCPURL: origin + "/mcp", SSEURL: origin + "/mcp/sse"}
	v.VSCodeJSON = `{
  "servers": {
    "snippets": { "type": "http", "url": "` + v.MCPURL + `" }
  }
}`
	var buf bytes.Buffer
	if err := t.Execute(&buf, v); err != nil {
		return nil, err
	}
	page := buf.Bytes()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(page)
	}), nil
}
