// Package policy decides who may get in: an optional policy on the upstream identity (allowed
// Entra tenants, required app roles or groups, allowed e-mail domains). The OAuth server asks
// it at the callback, before any code is issued, and again after every upstream refresh, so a
// user who loses a role loses access at the next refresh.
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/gateway/internal/identity"
)

// Reasons a user is refused; they are the values of the reason metric label.
const (
	ReasonTenant        = "tenant"
	ReasonRole          = "role"
	ReasonGroupsOverage = "groups_overage"
	ReasonDomain        = "domain"
)

// Config is the policy. Empty lists do not restrict.
type Config struct {
	// AllowedTenants are Entra tenant ids (`tid`) whose users may sign in
	// (MCPGATE_ALLOWED_TENANTS). A user without tid is refused when this is set.
	AllowedTenants []string
	// Required are app role values or group object ids; a user needs at least one of them in
	// the ID token's `roles` or `groups` (MCPGATE_REQUIRED_ROLES).
	Required []string
	// AllowedEmailDomains are the e-mail domains that may sign in
	// (MCPGATE_ALLOWED_EMAIL_DOMAINS). The domain is taken from a trustworthy claim only:
	// for Entra (tid present) `preferred_username` (the UPN, whose domain the tenant has
	// verified) or a verified `email` (xms_edov); for other IdPs `email` with
	// `email_verified: true`.
	AllowedEmailDomains []string
	// Logger receives refusals (user id, tenant, reason; never tokens). Nil discards.
	Logger *slog.Logger
	// Metrics receives mcpgate_policy_decisions_total. Nil registers nothing.
	Metrics prometheus.Registerer
}

// Policy is a compiled Config. Its zero value and a nil *Policy admit everyone.
type Policy struct {
	tenants  map[string]bool
	roles    []string
	groups   map[string]bool
	domains  map[string]bool
	log      *slog.Logger
	decision *prometheus.CounterVec
}

// New checks and compiles cfg.
func New(cfg Config) (*Policy, error) {
	p := &Policy{tenants: map[string]bool{}, groups: map[string]bool{}, domains: map[string]bool{}, log: cfg.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	for _, t := range cfg.AllowedTenants {
		t = strings.ToLower(strings.TrimSpace(t))
		switch {
		case t == "":
		case t == "common" || t == "organizations" || t == "consumers" || strings.Contains(t, "."):
			errs = append(errs, fmt.Errorf("allowed tenant %q: use the tenant id (a GUID), as in the token's tid claim", t))
		default:
			p.tenants[t] = true
		}
	}
	for _, r := range cfg.Required {
		if r = strings.TrimSpace(r); r != "" {
			p.roles = append(p.roles, r)
			p.groups[strings.ToLower(r)] = true
		}
	}
	for _, d := range cfg.AllowedEmailDomains {
		d = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@"))
		switch {
		case d == "":
		case strings.ContainsAny(d, "@/ *") || !strings.Contains(d, "."):
			errs = append(errs, fmt.Errorf("allowed e-mail domain %q: want a domain such as contoso.com", d))
		default:
			p.domains[d] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p.decision = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcpgate",
		Subsystem: "policy",
		Name:      "decisions_total",
		Help:      "Identity policy decisions (at the callback and at every refresh) by outcome and reason.",
	}, []string{"outcome", "reason"})
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(p.decision); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("policy: register metrics: %w", err)
			}
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				p.decision = existing
			}
		}
	}
	return p, nil
}

// Enabled reports whether the policy restricts anything.
func (p *Policy) Enabled() bool {
	return p != nil && (len(p.tenants) > 0 || len(p.roles) > 0 || len(p.domains) > 0)
}

// Describe summarises the policy for the startup log.
func (p *Policy) Describe() string {
	if !p.Enabled() {
		return "none (every user the identity provider signs in is admitted)"
	}
	var parts []string
	if len(p.tenants) > 0 {
		parts = append(parts, fmt.Sprintf("%d allowed tenant(s)", len(p.tenants)))
	}
	if len(p.roles) > 0 {
		parts = append(parts, "one of the roles or groups "+strings.Join(p.roles, ", "))
	}
	if len(p.domains) > 0 {
		parts = append(parts, fmt.Sprintf("%d allowed e-mail domain(s)", len(p.domains)))
	}
	return strings.Join(parts, "; ")
}

// Refusal is the error Admit returns for a user the policy does not admit.
type Refusal struct {
	reason string
	detail string
}

// Error describes the refusal for logs (no token, only the failing claim's summary).
func (r *Refusal) Error() string { return "policy: " + r.reason + ": " + r.detail }

// Reason is a bounded label: tenant, role, groups_overage or domain.
func (r *Refusal) Reason() string { return r.reason }

// Explain is the refusal page's title and hint: what is missing and who can fix it.
func (r *Refusal) Explain() (title, hint string) {
	switch r.reason {
	case ReasonTenant:
		return "Your organization is not allowed here",
			"This gateway admits accounts of specific Microsoft Entra tenants only, and yours is not one of them. Sign in with an account of an allowed organization, or ask the gateway's administrator to add your tenant (MCPGATE_ALLOWED_TENANTS)."
	case ReasonRole:
		return "You do not have the required role",
			"This gateway admits users with a specific app role or group membership, and your sign-in has none of them. Ask an administrator of your organization to assign you the app role (Entra admin center → Enterprise applications → the gateway's app → Users and groups), then connect again."
	case ReasonGroupsOverage:
		return "Your group memberships could not be checked",
			"You belong to so many groups that Microsoft Entra ID left them out of the sign-in token, so group-based access cannot be checked. Ask the gateway's administrator to require an app role instead (assign your group to the app role), or to emit only groups assigned to the application."
	case ReasonDomain:
		return "Your e-mail domain is not allowed here",
			"This gateway admits accounts of specific e-mail domains only. Sign in with an account of an allowed domain, or ask the gateway's administrator (MCPGATE_ALLOWED_EMAIL_DOMAINS)."
	}
	return "You are not allowed to use this server", "Ask the gateway's administrator for access."
}

// Admit returns nil when u may have a session and a *Refusal otherwise. Every restriction
// that is configured must hold.
func (p *Policy) Admit(ctx context.Context, u identity.User) error {
	if !p.Enabled() {
		return nil
	}
	if r := p.check(u); r != nil {
		p.decision.WithLabelValues("refused", r.reason).Inc()
		p.log.InfoContext(ctx, "policy: user refused", "user", u.ID(), "tid", u.TenantID, "reason", r.reason, "detail", r.detail)
		return r
	}
	p.decision.WithLabelValues("allowed", "none").Inc()
	return nil
}

func (p *Policy) check(u identity.User) *Refusal {
	if len(p.tenants) > 0 && !p.tenants[strings.ToLower(u.TenantID)] {
		if u.TenantID == "" {
			return &Refusal{ReasonTenant, "the ID token has no tid claim"}
		}
		return &Refusal{ReasonTenant, "tenant " + clip(u.TenantID) + " is not allowed"}
	}
	if len(p.roles) > 0 && !p.hasRequired(u) {
		if u.GroupsOverage {
			return &Refusal{ReasonGroupsOverage, "no required role, and the groups claim was left out (overage)"}
		}
		return &Refusal{ReasonRole, fmt.Sprintf("none of the required roles or groups among %d role(s) and %d group(s)", len(u.Roles), len(u.Groups))}
	}
	if len(p.domains) > 0 {
		d, source := Domain(u)
		if d == "" {
			return &Refusal{ReasonDomain, "no verified e-mail address or user name in the ID token"}
		}
		if !p.domains[d] {
			return &Refusal{ReasonDomain, "domain " + clip(d) + " (from " + source + ") is not allowed"}
		}
	}
	return nil
}

// hasRequired reports whether u has one of the required app roles (exact, as Entra role
// values are case-sensitive) or group object ids (case-insensitive GUIDs).
func (p *Policy) hasRequired(u identity.User) bool {
	for _, r := range u.Roles {
		if slices.Contains(p.roles, r) {
			return true
		}
	}
	for _, g := range u.Groups {
		if p.groups[strings.ToLower(g)] {
			return true
		}
	}
	return false
}

// Domain returns the lower-case e-mail domain the policy trusts for u and the claim it came
// from, or "" when there is none: for Entra users (tid set) the domain of preferred_username
// (the UPN) else of a verified email; for other IdPs the domain of a verified email.
func Domain(u identity.User) (domain, source string) {
	if u.TenantID != "" {
		if d := domainOf(u.Username); d != "" {
			return d, "preferred_username"
		}
	}
	if u.EmailVerified {
		if d := domainOf(u.Email); d != "" {
			return d, "email"
		}
	}
	return "", ""
}

// domainOf returns the lower-case domain of an address, or "" when s is not one address.
func domainOf(s string) string {
	if s == "" || len(s) > 320 || strings.ContainsAny(s, " <>,\"") {
		return ""
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return ""
	}
	at := strings.LastIndexByte(a.Address, '@')
	d := strings.ToLower(strings.TrimSuffix(a.Address[at+1:], "."))
	if d == "" || !strings.Contains(d, ".") {
		return ""
	}
	return d
}

// clip bounds a claim value in logs.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
