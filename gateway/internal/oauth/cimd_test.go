package oauth

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
)

// TestMetadataDocumentClient runs the flow with a Client ID Metadata Document client (served on
// loopback through the registry's test-only switch): the consent page marks it unverified and
// names the document's host, and the tokens are issued to the URL client id.
func TestMetadataDocumentClient(t *testing.T) {
	docURL := startDocServer(t, nil)
	e := newEnv(t, func(_ *Config, o *clients.Options) { o.AllowLoopbackMetadata = true })
	c := testClient{ID: docURL, Redirect: "http://127.0.0.1:3000/callback"}
	b := newBrowser(e.h)
	v, ch := pkce()
	resp := b.get(authorizeURL(c, ch, nil))
	wantStatus(t, resp, http.StatusFound)
	loc := location(t, resp)
	page := body(t, b.get(testPublic+loc.RequestURI()))
	u, _ := url.Parse(docURL)
	if !strings.Contains(page, "CIMD Client") || !strings.Contains(page, "Unverified") || !strings.Contains(page, "metadata document at "+u.Host) {
		t.Fatalf("consent page:\n%s", page)
	}
	res := e.authorize(t, newBrowser(e.h), c, ch, nil)
	tresp, m := e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {res.Redirect.Query().Get("code")}, "redirect_uri": {c.Redirect}, "client_id": {c.ID}, "code_verifier": {v}})
	wantStatus(t, tresp, 200)
	if m["refresh_token"] == nil {
		t.Fatalf("token %v", m)
	}
}
