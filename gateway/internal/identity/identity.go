// Package identity holds the plain data types that describe who signed in upstream and the
// tokens the upstream identity provider issued. It is shared by the upstream client, the
// grant store and the policy checks, and imports nothing of ours.
package identity

import "time"

// User is the identity the upstream IdP asserted for the signed-in person.
type User struct {
	// Subject is the ID token's `sub` (pairwise per app in Entra).
	Subject string `json:"sub"`
	// ObjectID is Entra's `oid` (stable across apps); for other IdPs it equals Subject.
	ObjectID string `json:"oid"`
	// TenantID is Entra's `tid`; empty for other IdPs.
	TenantID string `json:"tid,omitempty"`
	// Issuer is the ID token's `iss`.
	Issuer string `json:"iss,omitempty"`
	// Name is the display name (`name`).
	Name string `json:"name,omitempty"`
	// Username is `preferred_username` (Entra: the UPN or e-mail).
	Username string `json:"preferred_username,omitempty"`
	// Email is the `email` claim when present.
	Email string `json:"email,omitempty"`
	// EmailVerified is true when the IdP vouches for Email: `email_verified` (OIDC) or
	// Entra's `xms_edov` (the e-mail domain is verified by the tenant). Entra's plain `email`
	// claim is not verified and must not decide access.
	EmailVerified bool `json:"email_verified,omitempty"`
	// Roles are app roles (`roles`) and Groups are group object ids (`groups`).
	Roles  []string `json:"roles,omitempty"`
	Groups []string `json:"groups,omitempty"`
	// GroupsOverage is true when Entra left the groups out of the token because the user is
	// in too many (`_claim_names` has `groups`): Groups is then incomplete.
	GroupsOverage bool `json:"groups_overage,omitempty"`
}

// ID is the stable key for the user: the object id, else the subject.
func (u User) ID() string {
	if u.ObjectID != "" {
		return u.ObjectID
	}
	return u.Subject
}

// Tokens are the upstream IdP's tokens for one session. They are secrets: they are stored
// only encrypted and never logged.
type Tokens struct {
	AccessToken  string    `json:"at,omitempty"`
	RefreshToken string    `json:"rt,omitempty"`
	IDToken      string    `json:"idt,omitempty"`
	Expiry       time.Time `json:"exp,omitempty"`
}

// String hides the token values so that a stray %v never prints them.
func (Tokens) String() string { return "identity.Tokens{redacted}" }

// GoString hides the token values from %#v too.
func (t Tokens) GoString() string { return t.String() }
