package main

import (
	"fmt"

	"github.com/redis/go-redis/v9/auth"

	entraid "github.com/redis/go-redis-entraid"
	"github.com/redis/go-redis-entraid/identity"
)

// redisEntraCredentials returns go-redis-entraid's streaming credentials provider, which
// signs in to Azure Managed Redis with the workload's Entra identity (DefaultAzureCredential:
// the managed identity named by AZURE_CLIENT_ID in Azure) and re-authenticates live
// connections before the token expires.
func redisEntraCredentials() (auth.StreamingCredentialsProvider, error) {
	cp, err := entraid.NewDefaultAzureCredentialsProvider(entraid.DefaultAzureCredentialsProviderOptions{
		DefaultAzureIdentityProviderOptions: identity.DefaultAzureIdentityProviderOptions{
			Scopes: []string{identity.RedisScopeDefault},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("redis: Entra credentials (MCPGATE_REDIS_ENTRA; needs AZURE_CLIENT_ID in Azure): %w", err)
	}
	return cp, nil
}
