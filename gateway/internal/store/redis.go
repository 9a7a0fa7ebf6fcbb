package store

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/auth"
)

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// URL is a redis:// or rediss:// URL (redis.ParseURL syntax).
	URL string
	// StreamingCredentialsProvider, when set, authenticates connections (for example
	// go-redis-entraid's provider for Azure Managed Redis with Entra ID).
	StreamingCredentialsProvider auth.StreamingCredentialsProvider
	// Configure, when set, may adjust the parsed options before the client is created.
	Configure func(*redis.Options)
}

// Redis is the Store backed by a Redis server (go-redis v9).
type Redis struct {
	client *redis.Client
}

// NewRedis connects to Redis as opts say and pings it once.
func NewRedis(ctx context.Context, opts RedisOptions) (*Redis, error) {
	return nil, errors.New("store: redis not implemented yet")
}

// Client returns the underlying go-redis client (for redis_rate and health checks).
func (r *Redis) Client() *redis.Client { return r.client }

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, error) { return nil, errTODO }

// Set implements Store.
func (r *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	return errTODO
}

// SetNX implements Store.
func (r *Redis) SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	return false, errTODO
}

// GetDel implements Store.
func (r *Redis) GetDel(ctx context.Context, key string) ([]byte, error) { return nil, errTODO }

// Del implements Store.
func (r *Redis) Del(ctx context.Context, keys ...string) error { return errTODO }

// SAdd implements Store.
func (r *Redis) SAdd(ctx context.Context, key, member string, ttl time.Duration) error {
	return errTODO
}

// SRem implements Store.
func (r *Redis) SRem(ctx context.Context, key, member string) error { return errTODO }

// SMembers implements Store.
func (r *Redis) SMembers(ctx context.Context, key string) ([]string, error) { return nil, errTODO }

// Publish implements Store.
func (r *Redis) Publish(ctx context.Context, channel string, msg []byte) error { return errTODO }

// Subscribe implements Store.
func (r *Redis) Subscribe(ctx context.Context, channel string) (Subscription, error) {
	return nil, errTODO
}

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error { return errTODO }

// Close implements Store.
func (r *Redis) Close() error { return nil }

// RedisLimiter is the Limiter backed by github.com/go-redis/redis_rate (GCRA in Redis).
type RedisLimiter struct{}

// NewRedisLimiter returns a limiter sharing r's connection.
func NewRedisLimiter(r *Redis) *RedisLimiter { return &RedisLimiter{} }

// Allow implements Limiter.
func (l *RedisLimiter) Allow(ctx context.Context, key string, limit Limit) (Result, error) {
	return Result{}, errTODO
}
