package main

import (
	"fmt"
	"os"

	"github.com/redis/go-redis/v9/auth"

	"github.com/mcpgate/mcpgate/gateway/internal/azureauth"
)

// redisEntraCredentials returns go-redis-entraid's streaming credentials provider for Azure
// Managed Redis with Entra authentication: tokens of the managed identity named by
// AZURE_CLIENT_ID (else DefaultAzureCredential, for local use with az login), user name = the
// token's oid, live connections re-authenticated before the token expires.
func redisEntraCredentials() (auth.StreamingCredentialsProvider, error) {
	cred, err := azureauth.Workload(os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("redis: Entra credentials (MCPGATE_REDIS_ENTRA): %w", err)
	}
	cp, err := azureauth.RedisCredentials(cred, azureauth.RedisOptions{})
	if err != nil {
		return nil, fmt.Errorf("redis: Entra credentials (MCPGATE_REDIS_ENTRA): %w", err)
	}
	return cp, nil
}
