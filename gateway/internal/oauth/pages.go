package oauth

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
)

//go:embed templates/*.html templates/*.css
var templateFS embed.FS

// loadPages parses the page templates and returns them with the CSP hash of the embedded
// style sheet (pages inline it, so they need no static route and no 'unsafe-inline').
func loadPages() (*template.Template, string, error) {
	css, err := templateFS.ReadFile("templates/style.css")
	if err != nil {
		return nil, "", fmt.Errorf("oauth: read style sheet: %w", err)
	}
	t, err := template.New("pages").Funcs(template.FuncMap{
		// style returns the embedded style sheet; it is a constant of this binary.
		"style": func() template.CSS { return template.CSS(css) },
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, "", fmt.Errorf("oauth: parse templates: %w", err)
	}
	sum := sha256.Sum256(css)
	return t, "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'", nil
}

// pageData wraps a template's view with the layout's fields.
type pageData struct {
	Title string
	View  any
}

// errorView is the error page's data.
type errorView struct {
	Title     string
	Message   string
	Hint      string
	ReturnURL template.URL
}

// render writes a page with the security headers every page gets: no framing, a strict CSP
// whose form-action is formAction ("'none'" when empty), no caching, no referrer.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, view any, formAction string) {
	var buf bytes.Buffer
	title := "Sign-in"
	switch v := view.(type) {
	case consentView:
		title = "Allow " + v.ClientName + "?"
	case errorView:
		title = v.Title
	}
	if err := s.pages.ExecuteTemplate(&buf, name, pageData{Title: title, View: view}); err != nil {
		s.log.ErrorContext(r.Context(), "oauth: render page", "page", name, "err", err)
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString("<!doctype html><title>Error</title><p>Internal error.</p>")
	}
	if formAction == "" {
		formAction = "'none'"
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src "+s.styleHash+"; img-src 'self' data:; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on the
	// consent form's POST, and the Origin check would refuse it.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// errorPage renders a readable error page. returnURL, when set, is a validated redirect back
// to the client carrying an OAuth error.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, title, msg, returnURL string) {
	s.errorPageHint(w, r, status, title, msg, "", returnURL)
}

func (s *Server) errorPageHint(w http.ResponseWriter, r *http.Request, status int, title, msg, hint, returnURL string) {
	s.render(w, r, status, "error", errorView{
		Title:   title,
		Message: msg,
		Hint:    hint,
		// The URL is built by appendQuery from a registered, scheme-checked redirect URI.
		ReturnURL: template.URL(returnURL),
	}, "")
}
