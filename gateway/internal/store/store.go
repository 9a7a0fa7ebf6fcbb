// Package store holds the few storage primitives the gateway needs (key/value with TTL,
// single-use values, small sets, pub/sub) with a Redis implementation for production and an
// in-memory one for the local default, plus rate limiters for low-volume endpoints.
package store

import (
	"context"
	"errors"
	"strings"
	"time"
)

// ErrNotFound is returned by Get and GetDel when the key does not exist (or has expired).
var ErrNotFound = errors.New("store: not found")

// errBadTTL is returned by Expire for a ttl that is not positive.
var errBadTTL = errors.New("store: expire: ttl must be positive")

// Prefix is the namespace of every key the gateway writes.
const Prefix = "mcpgate"

// Key builds a namespaced key: "mcpgate:" + parts joined by ":". No part may be
// client-controlled unless it has been hashed (or is a value we generated and validated):
// a client must never be able to choose, or collide with, another record's key.
func Key(parts ...string) string {
	return Prefix + ":" + strings.Join(parts, ":")
}

// Store is the storage interface shared by the Redis and in-memory implementations. A ttl of 0
// means no expiry. Errors other than ErrNotFound mean the store is unreachable or failing.
type Store interface {
	// Get returns the value at key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores val at key with the given ttl.
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// SetNX stores val at key only if key does not exist, and reports whether it did.
	SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	// SetXX replaces the value at key only if key exists, and reports whether it did (so an
	// update never resurrects a record deleted meanwhile).
	SetXX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	// GetDel atomically returns and deletes the value at key (single use), or ErrNotFound.
	GetDel(ctx context.Context, key string) ([]byte, error)
	// Del deletes keys; missing keys are not an error.
	Del(ctx context.Context, keys ...string) error
	// SAdd adds member to the set at key and, if ttl > 0, sets the set's ttl to ttl (so a set
	// lives ttl after its latest addition).
	SAdd(ctx context.Context, key, member string, ttl time.Duration) error
	// SRem removes member from the set at key.
	SRem(ctx context.Context, key, member string) error
	// SMembers returns the members of the set at key (empty if missing).
	SMembers(ctx context.Context, key string) ([]string, error)
	// Exists reports, for each key in order, whether it exists (any kind of value).
	Exists(ctx context.Context, keys ...string) ([]bool, error)
	// Expire sets the ttl (> 0) of each key that exists and reports, for each key in order,
	// whether it did.
	Expire(ctx context.Context, ttl time.Duration, keys ...string) ([]bool, error)
	// Publish sends msg to every subscriber of channel and reports how many received it (on
	// Redis, the subscribers connected to the server that took the PUBLISH).
	Publish(ctx context.Context, channel string, msg []byte) (int64, error)
	// Subscribe subscribes to channel until ctx ends or the subscription is closed.
	Subscribe(ctx context.Context, channel string) (Subscription, error)
	// Ping checks that the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

// Subscription is a live pub/sub subscription that reports its connection state, so that a
// cache fed by it can flush itself when it may have missed messages.
type Subscription interface {
	// Messages delivers published payloads. It is closed when the subscription ends.
	Messages() <-chan []byte
	// State delivers true when the subscription is (re-)established and false when its
	// connection dropped (messages may have been missed). It is closed when the subscription
	// ends. The first value is true once the subscription is confirmed.
	State() <-chan bool
	// Close ends the subscription.
	Close() error
}
