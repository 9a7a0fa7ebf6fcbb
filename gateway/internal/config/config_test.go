package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnvironmentAndFlagsPrecedence(t *testing.T) {
	var c Serve
	env := map[string]string{"MCPGATE_LISTEN": "127.0.0.1:9000", "MCPGATE_ACCESS_TOKEN_TTL": "15m", "MCPGATE_DEV_LOGIN": "true"}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	Bind(fs, c.Settings(), func(k string) string { return env[k] })
	if err := fs.Parse([]string{"--listen", "127.0.0.1:9100"}); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9100" {
		t.Errorf("flag should win over env: got %q", c.Listen)
	}
	if c.AccessTokenTTL != 15*time.Minute || !c.DevLogin {
		t.Errorf("env should set defaults: ttl %v dev %v", c.AccessTokenTTL, c.DevLogin)
	}
	if c.PublicURL != "http://127.0.0.1:8000" {
		t.Errorf("built-in default lost: %q", c.PublicURL)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("local dev config should be valid: %v", err)
	}
}

func TestCheckEnvReportsBadValues(t *testing.T) {
	var c Serve
	env := map[string]string{"MCPGATE_ACCESS_TOKEN_TTL": "soon", "MCPGATE_REDIS_ENTRA": "perhaps"}
	err := CheckEnv(c.Settings(), func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "MCPGATE_ACCESS_TOKEN_TTL") || !strings.Contains(err.Error(), "MCPGATE_REDIS_ENTRA") {
		t.Fatalf("want both bad variables named, got %v", err)
	}
}

func TestValidate(t *testing.T) {
	base := func() Serve {
		var c Serve
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		Bind(fs, c.Settings(), func(string) string { return "" })
		_ = fs.Parse(nil)
		return c
	}
	cases := []struct {
		name string
		mod  func(*Serve)
		want string // substring of the error; "" means valid
	}{
		{"no idp", func(c *Serve) {}, "no identity provider"},
		{"dev ok", func(c *Serve) { c.DevLogin = true }, ""},
		{"dev on all interfaces", func(c *Serve) { c.DevLogin = true; c.Listen = "0.0.0.0:8000" }, "only when listening on loopback"},
		{"entra needs client id", func(c *Serve) { c.EntraTenantID = "t" }, "MCPGATE_UPSTREAM_CLIENT_ID"},
		{"entra needs credential", func(c *Serve) { c.EntraTenantID = "t"; c.UpstreamClientID = "c" }, "MCPGATE_UPSTREAM_FIC_CLIENT_ID"},
		{"entra fic ok", func(c *Serve) {
			c.EntraTenantID = "t"
			c.UpstreamClientID = "c"
			c.UpstreamFICClientID = "m"
			c.PublicURL = "https://mcp.example.com"
		}, ""},
		{"two idps", func(c *Serve) { c.DevLogin = true; c.UpstreamIssuer = "https://idp" }, "choose one"},
		{"http public non-loopback", func(c *Serve) { c.DevLogin = true; c.PublicURL = "http://example.com" }, "use https"},
		{"public url with path", func(c *Serve) { c.DevLogin = true; c.PublicURL = "https://example.com/x" }, "origin without path"},
		{"cimd switch needs dev", func(c *Serve) {
			c.UpstreamIssuer = "https://i"
			c.UpstreamClientID = "c"
			c.UpstreamClientSecret = "s"
			c.AllowLoopbackCIMD = true
		}, "needs --dev"},
		{"kv secret needs vault", func(c *Serve) { c.DevLogin = true; c.FunctionKeySecret = "fk" }, "MCPGATE_KEYVAULT_URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestIssuer(t *testing.T) {
	c := Serve{EntraTenantID: "contoso.onmicrosoft.com"}
	if got := c.Issuer(); got != "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0" {
		t.Fatal(got)
	}
}

// TestReadmeTableIsCurrent keeps the README's configuration reference in step with the flags.
func TestReadmeTableIsCurrent(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var c Serve
	if want := Markdown(c.Settings()); !strings.Contains(string(readme), want) {
		t.Fatalf("README.md's configuration table is stale: paste the output of `go run ./gateway/cmd/mcpgate config --markdown`\n%s", want)
	}
}
