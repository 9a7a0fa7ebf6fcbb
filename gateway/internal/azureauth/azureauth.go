// Package azureauth holds the gateway's secretless Azure sign-ins: the managed identity, the
// federated client assertion it yields for the Entra app registration (a token for
// api://AzureADTokenExchange, sent as client_assertion instead of a client secret), and the
// go-redis-entraid credentials for Azure Managed Redis with Entra authentication.
package azureauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/redis/go-redis/v9/auth"

	entraid "github.com/redis/go-redis-entraid"
	"github.com/redis/go-redis-entraid/identity"
	"github.com/redis/go-redis-entraid/manager"
	"github.com/redis/go-redis-entraid/shared"
)

// Token-exchange scopes of the federated credential's audience, per cloud.
const (
	TokenExchangeScope       = "api://AzureADTokenExchange/.default"
	TokenExchangeScopeUSGov  = "api://AzureADTokenExchangeUSGov/.default"
	TokenExchangeScopeChina  = "api://AzureADTokenExchangeChina/.default"
	RedisScope               = identity.RedisScopeDefault // https://redis.azure.com/.default
	assertionTimeout         = 15 * time.Second
	defaultRedisRefreshRatio = 0.7
)

// ManagedIdentity returns the managed identity credential: the user-assigned identity with
// this client id, or the system-assigned identity when clientID is empty. Where it gets tokens
// (IMDS, or the App Service / Container Apps IDENTITY_ENDPOINT + IDENTITY_HEADER contract) is
// read from the environment now, when it is created.
func ManagedIdentity(clientID string) (azcore.TokenCredential, error) {
	var opts azidentity.ManagedIdentityCredentialOptions
	if clientID = strings.TrimSpace(clientID); clientID != "" {
		opts.ID = azidentity.ClientID(clientID)
	}
	cred, err := azidentity.NewManagedIdentityCredential(&opts)
	if err != nil {
		return nil, fmt.Errorf("managed identity %q: %w", clientID, err)
	}
	return cred, nil
}

// Workload is the credential for the gateway's own Azure calls (Redis, Key Vault, Storage):
// the managed identity named by AZURE_CLIENT_ID when it is set (as in Azure), else
// DefaultAzureCredential (local development: az login / azd auth login).
func Workload(getenv func(string) string) (azcore.TokenCredential, error) {
	if id := getenv("AZURE_CLIENT_ID"); id != "" {
		return ManagedIdentity(id)
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("azure credential (set AZURE_CLIENT_ID to the managed identity's client id): %w", err)
	}
	return cred, nil
}

// ClientAssertion returns a function that gets a token for scope (TokenExchangeScope in the
// public cloud) from cred: the client assertion of an Entra app registration's federated
// credential that trusts this managed identity. azidentity caches the token and renews it
// before it expires, so every call returns a currently valid assertion.
func ClientAssertion(cred azcore.TokenCredential, scope string) func(context.Context) (string, error) {
	if scope == "" {
		scope = TokenExchangeScope
	}
	return func(ctx context.Context) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, assertionTimeout)
		defer cancel()
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
		if err != nil {
			return "", fmt.Errorf("managed identity token for the federated credential (%s): %w", scope, err)
		}
		if tok.Token == "" {
			return "", errors.New("managed identity returned an empty token for the federated credential")
		}
		return tok.Token, nil
	}
}

// RedisOptions configure RedisCredentials. Zero values take the defaults.
type RedisOptions struct {
	// Scope is the token scope (default RedisScope).
	Scope string
	// RefreshRatio is the share of a token's lifetime after which it is renewed and live
	// connections re-authenticated (default 0.7).
	RefreshRatio float64
	// RequestTimeout bounds one token request (default go-redis-entraid's 30 s).
	RequestTimeout time.Duration
}

// RedisCredentials returns go-redis-entraid's streaming credentials provider (set it as
// redis.Options.StreamingCredentialsProvider) backed by cred: the Redis user name is the
// token's oid claim, the password the token; the token is renewed before it expires and every
// live connection is re-authenticated (AUTH) with the new one, as Azure Managed Redis drops
// connections whose token has expired.
func RedisCredentials(cred azcore.TokenCredential, opts RedisOptions) (auth.StreamingCredentialsProvider, error) {
	if cred == nil {
		return nil, errors.New("redis Entra credentials: no Azure credential")
	}
	if opts.Scope == "" {
		opts.Scope = RedisScope
	}
	if opts.RefreshRatio == 0 {
		opts.RefreshRatio = defaultRedisRefreshRatio
	}
	tm, err := manager.NewTokenManager(credentialIDP{cred: cred, scope: opts.Scope}, manager.TokenManagerOptions{
		ExpirationRefreshRatio: opts.RefreshRatio,
		RequestTimeout:         opts.RequestTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("redis Entra credentials: token manager: %w", err)
	}
	cp, err := entraid.NewCredentialsProvider(tm, entraid.CredentialsProviderOptions{})
	if err != nil {
		return nil, fmt.Errorf("redis Entra credentials: %w", err)
	}
	return cp, nil
}

// credentialIDP adapts an azcore credential to go-redis-entraid's identity provider (its own
// managed-identity provider selects a user-assigned identity by object id only; this one
// takes any credential, such as ManagedIdentity(AZURE_CLIENT_ID)).
type credentialIDP struct {
	cred  azcore.TokenCredential
	scope string
}

func (c credentialIDP) RequestToken(ctx context.Context) (shared.IdentityProviderResponse, error) {
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.scope}})
	if err != nil {
		return nil, fmt.Errorf("redis Entra token (%s): %w", c.scope, err)
	}
	return shared.NewIDPResponse(shared.ResponseTypeAccessToken, &tok)
}
