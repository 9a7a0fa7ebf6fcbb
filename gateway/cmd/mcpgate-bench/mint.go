package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

// runMint issues a grant for a synthetic user into the gateway's Redis, sealed with the
// gateway's session-key ring, and prints the access token.
func runMint(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mint", flag.ExitOnError)
	redisURL := fs.String("redis-url", "", "the gateway's Redis (required: the grant must be where the gateway looks)")
	ringFile := fs.String("session-keys-file", ".mcpgate/session-keys.json", "the gateway's session-key ring file")
	resource := fs.String("resource", "http://127.0.0.1:8000/mcp", "resource the token is bound to")
	clientID := fs.String("client-id", "mcpgate-bench", "client id of the grant")
	user := fs.String("user", "bench-user", "user object id (and name) of the grant")
	_ = fs.Parse(args)
	tok, err := mint(ctx, *redisURL, *ringFile, *resource, *clientID, *user)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

// mint issues one grant for user and returns its access token.
func mint(ctx context.Context, redisURL, ringFile, resource, clientID, user string) (string, error) {
	toks, err := mintMany(ctx, redisURL, ringFile, resource, clientID, []string{user})
	if err != nil {
		return "", err
	}
	return toks[0], nil
}

// mintMany issues one grant per user (16 at a time) into the grant store at redisURL,
// sealed with the ring in ringFile, and returns their access tokens in the order of users.
func mintMany(ctx context.Context, redisURL, ringFile, resource, clientID string, users []string) ([]string, error) {
	if redisURL == "" {
		return nil, fmt.Errorf("mint: -redis-url is required")
	}
	doc, err := os.ReadFile(ringFile)
	if err != nil {
		return nil, fmt.Errorf("mint: read session-key ring: %w", err)
	}
	ring, err := session.ParseRing(doc)
	if err != nil {
		return nil, fmt.Errorf("mint: %w", err)
	}
	st, err := store.NewRedis(ctx, store.RedisOptions{URL: redisURL})
	if err != nil {
		return nil, fmt.Errorf("mint: connect to Redis: %w", err)
	}
	defer st.Close()
	m := grants.New(st, session.NewStaticKeeper(ring), grants.Options{})
	out := make([]string, len(users))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, user := range users {
		g.Go(func() error {
			ts, err := m.Issue(gctx, grants.Grant{ClientID: clientID, Resource: resource, Scope: "mcp:tools",
				User: identity.User{Subject: user, ObjectID: user, Name: user}}, identity.Tokens{AccessToken: "bench-upstream"})
			if err != nil {
				return fmt.Errorf("mint: issue grant: %w", err)
			}
			out[i] = ts.AccessToken
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}
