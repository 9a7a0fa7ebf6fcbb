package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcpgate/mcpgate/gateway/internal/identity"
)

const (
	tenantA = "11111111-1111-1111-1111-111111111111"
	tenantB = "22222222-2222-2222-2222-222222222222"
	groupG  = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
)

func TestAdmitTable(t *testing.T) {
	reg := prometheus.NewRegistry()
	p, err := New(Config{
		AllowedTenants:      []string{tenantA, " " + strings.ToUpper(tenantB) + " "},
		Required:            []string{"MCP.User", strings.ToUpper(groupG)},
		AllowedEmailDomains: []string{"contoso.com", "@fabrikam.com"},
		Metrics:             reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ok := identity.User{TenantID: tenantA, ObjectID: "o1", Username: "ann@contoso.com", Roles: []string{"MCP.User"}}
	with := func(f func(*identity.User)) identity.User { u := ok; f(&u); return u }
	tests := []struct {
		name   string
		user   identity.User
		reason string // "" = admitted
	}{
		{"all good", ok, ""},
		{"second tenant, case-insensitive", with(func(u *identity.User) { u.TenantID = strings.ToUpper(tenantB) }), ""},
		{"other tenant", with(func(u *identity.User) { u.TenantID = "99999999-9999-9999-9999-999999999999" }), ReasonTenant},
		{"no tid", with(func(u *identity.User) { u.TenantID = "" }), ReasonTenant},
		{"role by group id", with(func(u *identity.User) { u.Roles = nil; u.Groups = []string{"x", groupG} }), ""},
		{"role value is case-sensitive", with(func(u *identity.User) { u.Roles = []string{"mcp.user"} }), ReasonRole},
		{"no role", with(func(u *identity.User) { u.Roles = []string{"Other"} }), ReasonRole},
		{"no role, groups overage", with(func(u *identity.User) { u.Roles = nil; u.GroupsOverage = true }), ReasonGroupsOverage},
		{"role present despite overage", with(func(u *identity.User) { u.GroupsOverage = true }), ""},
		{"second domain, upper case", with(func(u *identity.User) { u.Username = "Ann@FABRIKAM.COM" }), ""},
		{"other domain", with(func(u *identity.User) { u.Username = "ann@evil.example" }), ReasonDomain},
		{"subdomain is not the domain", with(func(u *identity.User) { u.Username = "ann@x.contoso.com" }), ReasonDomain},
		{"look-alike suffix", with(func(u *identity.User) { u.Username = "ann@evilcontoso.com" }), ReasonDomain},
		{"Entra unverified email does not count", with(func(u *identity.User) { u.Username = "ann"; u.Email = "ann@contoso.com" }), ReasonDomain},
		{"Entra verified email (xms_edov)", with(func(u *identity.User) { u.Username = "ann"; u.Email = "ann@contoso.com"; u.EmailVerified = true }), ""},
		{"UPN wins over email", with(func(u *identity.User) { u.Email = "ann@evil.example"; u.EmailVerified = true }), ""},
		{"display-name address is not an address", with(func(u *identity.User) { u.Username = "Ann <ann@contoso.com>" }), ReasonDomain},
		{"two @", with(func(u *identity.User) { u.Username = "ann@evil.example@contoso.com" }), ReasonDomain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Admit(t.Context(), tt.user)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var r *Refusal
			if !errors.As(err, &r) || r.Reason() != tt.reason {
				t.Fatalf("err = %v, want reason %s", err, tt.reason)
			}
			if title, hint := r.Explain(); title == "" || hint == "" {
				t.Error("no explanation")
			}
		})
	}
	if got := testutil.ToFloat64(p.decision.WithLabelValues("refused", ReasonDomain)); got != 6 {
		t.Errorf("domain refusals counted %v, want 6", got)
	}
	if got := testutil.ToFloat64(p.decision.WithLabelValues("allowed", "none")); got != 7 {
		t.Errorf("admissions counted %v, want 7", got)
	}
}

func TestNonEntraDomainNeedsVerifiedEmail(t *testing.T) {
	p, err := New(Config{AllowedEmailDomains: []string{"example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	u := identity.User{Subject: "s", Username: "ann@example.org", Email: "ann@example.org"}
	if err := p.Admit(t.Context(), u); err == nil {
		t.Fatal("unverified email (and a non-Entra preferred_username) admitted")
	}
	u.EmailVerified = true
	if err := p.Admit(t.Context(), u); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyPolicyAdmitsEveryone(t *testing.T) {
	var nilPolicy *Policy
	if nilPolicy.Enabled() || nilPolicy.Admit(t.Context(), identity.User{}) != nil {
		t.Fatal("nil policy refuses")
	}
	p, err := New(Config{AllowedTenants: []string{" "}, Required: []string{""}})
	if err != nil || p.Enabled() || p.Admit(t.Context(), identity.User{}) != nil {
		t.Fatalf("empty policy: %v", err)
	}
	if !strings.Contains(p.Describe(), "every user") {
		t.Error(p.Describe())
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	for _, c := range []Config{
		{AllowedTenants: []string{"organizations"}},
		{AllowedTenants: []string{"contoso.onmicrosoft.com"}},
		{AllowedEmailDomains: []string{"*.contoso.com"}},
		{AllowedEmailDomains: []string{"ann@contoso.com"}},
		{AllowedEmailDomains: []string{"localhost"}},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	// Registering twice on one registry reuses the collector.
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := New(Config{Metrics: reg}); err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzDomain(f *testing.F) {
	for _, s := range []string{"ann@contoso.com", "a@b@c.com", "Ann <a@b.com>", "@x.com", "a@", "a@b", "\"a b\"@c.com", "a@[127.0.0.1]"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, tid bool) {
		u := identity.User{Username: s, Email: s, EmailVerified: true}
		if tid {
			u.TenantID = tenantA
		}
		d, src := Domain(u)
		if d == "" {
			return
		}
		if src == "" || strings.ContainsAny(d, "@ <>") || d != strings.ToLower(d) || !strings.HasSuffix(strings.ToLower(s), "@"+d) && !strings.HasSuffix(strings.ToLower(s), "@"+d+".") {
			t.Fatalf("Domain(%q) = %q from %q", s, d, src)
		}
	})
}

// BenchmarkAdmit is the policy's cost per callback or refresh (all three rules on).
func BenchmarkAdmit(b *testing.B) {
	p, err := New(Config{AllowedTenants: []string{tenantA, tenantB}, Required: []string{"MCP.User", groupG},
		AllowedEmailDomains: []string{"contoso.com", "fabrikam.com"}})
	if err != nil {
		b.Fatal(err)
	}
	u := identity.User{TenantID: tenantB, ObjectID: "o", Username: "ann@contoso.com", Groups: []string{"a", "b", groupG}}
	ctx := b.Context()
	for b.Loop() {
		if err := p.Admit(ctx, u); err != nil {
			b.Fatal(err)
		}
	}
}
