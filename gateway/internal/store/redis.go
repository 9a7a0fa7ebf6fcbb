package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/auth"
)

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// URL is a redis:// or rediss:// URL (redis.ParseURL syntax), for example
	// "redis://127.0.0.1:6379/0" or "rediss://name.region.redis.azure.net:10000".
	URL string
	// StreamingCredentialsProvider, when set, authenticates connections and re-authenticates
	// them when the credentials change (go-redis-entraid's provider for Azure Managed Redis
	// with Entra ID). It replaces any user and password from the URL.
	StreamingCredentialsProvider auth.StreamingCredentialsProvider
	// Configure, when set, may adjust the parsed options before the client is created.
	Configure func(*redis.Options)
	// Logger receives connection-state logs of subscriptions (never secrets). Nil discards.
	Logger *slog.Logger
	// NoPing skips the initial PING, so that a process can start (alive, not ready) while
	// Redis is unreachable; every call then fails until Redis answers.
	NoPing bool
}

// RedisBufferSize is the read and write buffer size of each Redis connection.
const RedisBufferSize = 8 << 10

// Redis is the Store backed by a Redis server (go-redis v9).
type Redis struct {
	client *redis.Client
	logger *slog.Logger
}

// NewRedis connects to Redis as opts say and pings it once (unless opts.NoPing); a failed
// ping is an error.
func NewRedis(ctx context.Context, opts RedisOptions) (*Redis, error) {
	o, err := redis.ParseURL(opts.URL)
	if err != nil {
		// ParseURL errors can quote the URL, which may hold a password.
		return nil, errors.New("store: MCPGATE_REDIS_URL is not a valid redis:// or rediss:// URL")
	}
	if opts.StreamingCredentialsProvider != nil {
		o.Username, o.Password = "", ""
		o.StreamingCredentialsProvider = opts.StreamingCredentialsProvider
	}
	// The gateway's values are small (the largest, a grant record with its sealed upstream
	// tokens, is a few KiB), so go-redis's defaults — 32 KiB per direction per connection and
	// 128 KiB on pipeline connections — would hold over 1 MiB for an ordinary pool, for
	// nothing. Larger replies still work: they take more than one read.
	o.ReadBufferSize, o.WriteBufferSize = RedisBufferSize, RedisBufferSize
	o.PipelineReadBufferSize, o.PipelineWriteBufferSize = RedisBufferSize, RedisBufferSize
	if opts.Configure != nil {
		opts.Configure(o)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Redis{client: redis.NewClient(o), logger: logger}
	if opts.NoPing {
		return r, nil
	}
	if err := r.Ping(ctx); err != nil {
		_ = r.client.Close()
		return nil, err
	}
	return r, nil
}

// NewRedisFromClient wraps an existing go-redis client.
func NewRedisFromClient(c *redis.Client, logger *slog.Logger) *Redis {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Redis{client: c, logger: logger}
}

// Client returns the underlying go-redis client (for redis_rate and health checks).
func (r *Redis) Client() *redis.Client { return r.client }

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: redis %s: %w", op, err)
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := r.client.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	return b, wrap("GET", err)
}

// Set implements Store.
func (r *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	return wrap("SET", r.client.Set(ctx, key, val, ttlArg(ttl)).Err())
}

func ttlArg(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return 0
	}
	return ttl
}

// SetNX implements Store.
func (r *Redis) SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	ok, err := r.client.SetNX(ctx, key, val, ttlArg(ttl)).Result()
	return ok, wrap("SET NX", err)
}

// SetXX implements Store.
func (r *Redis) SetXX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	ok, err := r.client.SetXX(ctx, key, val, ttlArg(ttl)).Result()
	return ok, wrap("SET XX", err)
}

// GetDel implements Store (Redis ≥ 6.2).
func (r *Redis) GetDel(ctx context.Context, key string) ([]byte, error) {
	b, err := r.client.GetDel(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	return b, wrap("GETDEL", err)
}

// Del implements Store.
func (r *Redis) Del(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	// One DEL per key keeps every command on one slot (Redis Cluster / Enterprise clustering).
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Del(ctx, k)
		}
		return nil
	})
	return wrap("DEL", err)
}

// SAdd implements Store: SADD, then EXPIRE ttl (in one MULTI) when ttl > 0, so the set
// lives ttl after its latest addition.
func (r *Redis) SAdd(ctx context.Context, key, member string, ttl time.Duration) error {
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, key, member)
		if ttl > 0 {
			p.PExpire(ctx, key, ttl)
		}
		return nil
	})
	return wrap("SADD", err)
}

// SRem implements Store.
func (r *Redis) SRem(ctx context.Context, key, member string) error {
	return wrap("SREM", r.client.SRem(ctx, key, member).Err())
}

// SMembers implements Store.
func (r *Redis) SMembers(ctx context.Context, key string) ([]string, error) {
	m, err := r.client.SMembers(ctx, key).Result()
	return m, wrap("SMEMBERS", err)
}

// Publish implements Store.
func (r *Redis) Publish(ctx context.Context, channel string, msg []byte) (int64, error) {
	n, err := r.client.Publish(ctx, channel, msg).Result()
	return n, wrap("PUBLISH", err)
}

// pipelineBatch bounds how many commands one pipelined round trip of Exists or Expire sends,
// so that a long key list neither builds one huge request nor holds a connection for long.
const pipelineBatch = 500

// Exists implements Store: one EXISTS per key (each on its own slot, as for Del), pipelined
// pipelineBatch at a time.
func (r *Redis) Exists(ctx context.Context, keys ...string) ([]bool, error) {
	out := make([]bool, 0, len(keys))
	for chunk := range slices.Chunk(keys, pipelineBatch) {
		cmds := make([]*redis.IntCmd, len(chunk))
		_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range chunk {
				cmds[i] = p.Exists(ctx, k)
			}
			return nil
		})
		if err != nil {
			return nil, wrap("EXISTS", err)
		}
		for _, c := range cmds {
			out = append(out, c.Val() > 0)
		}
	}
	return out, nil
}

// Expire implements Store: one PEXPIRE per key, pipelined pipelineBatch at a time.
func (r *Redis) Expire(ctx context.Context, ttl time.Duration, keys ...string) ([]bool, error) {
	if ttl <= 0 {
		return nil, errBadTTL
	}
	out := make([]bool, 0, len(keys))
	for chunk := range slices.Chunk(keys, pipelineBatch) {
		cmds := make([]*redis.BoolCmd, len(chunk))
		_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range chunk {
				cmds[i] = p.PExpire(ctx, k, ttl)
			}
			return nil
		})
		if err != nil {
			return nil, wrap("PEXPIRE", err)
		}
		for _, c := range cmds {
			out = append(out, c.Val())
		}
	}
	return out, nil
}

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error {
	return wrap("PING", r.client.Ping(ctx).Err())
}

// Close implements Store.
func (r *Redis) Close() error { return r.client.Close() }

// Subscription timings: how long a quiet connection waits before a health-check PING, how
// long a PING may go unanswered before the connection counts as dead (long enough for a large
// message to finish arriving: the answer queues behind it), and the bounds of the reconnect
// backoff while Redis is down.
const (
	subHealthInterval = 500 * time.Millisecond
	subDeadAfter      = 2 * time.Second
	subBackoffMin     = 50 * time.Millisecond
	subBackoffMax     = 500 * time.Millisecond
)

// Subscribe implements Store. It never fails because Redis is down: the subscription starts
// unconfirmed, reports true on State once Redis confirms it and false whenever the connection
// drops (detected by a failed read, or a health-check PING unanswered for two seconds), and
// resubscribes by itself.
func (r *Redis) Subscribe(ctx context.Context, channel string) (Subscription, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &redisSub{
		r:       r,
		channel: channel,
		msgs:    make(chan []byte, 256),
		state:   make(chan bool, 4),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go s.loop(ctx)
	return s, nil
}

type redisSub struct {
	r       *Redis
	channel string
	msgs    chan []byte
	state   chan bool
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once

	mu sync.Mutex
	ps *redis.PubSub // current go-redis subscription, replaced on reconnect
}

// closePS closes the current go-redis subscription, if any.
func (s *redisSub) closePS() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ps != nil {
		_ = s.ps.Close()
		s.ps = nil
	}
}

// swap replaces the current go-redis subscription (closing the old one) and returns the new.
func (s *redisSub) swap(ctx context.Context) *redis.PubSub {
	s.closePS()
	if ctx.Err() != nil {
		return nil
	}
	ps := s.r.client.Subscribe(ctx, s.channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ps = ps
	return ps
}

func (s *redisSub) Messages() <-chan []byte { return s.msgs }
func (s *redisSub) State() <-chan bool      { return s.state }

// Close ends the subscription and waits for its goroutine.
func (s *redisSub) Close() error {
	s.once.Do(func() {
		s.cancel()
		// Closing the connection unblocks a pending read at once.
		s.closePS()
		<-s.done
	})
	return nil
}

// received is one read of a subscription connection.
type received struct {
	msg any
	err error
}

// receive reads ps until a read fails, sending each result on out. Reads carry no deadline:
// a deadline that fires while a reply is half read would leave the rest of it on the
// connection, and the next read would start in the middle of a message (lost, and the
// connection then fails with a protocol error). A connection that stops answering is found by
// the health check instead, which closes it and so ends this read.
func receive(ctx context.Context, ps *redis.PubSub, out chan<- received) {
	for {
		msg, err := ps.Receive(ctx)
		select {
		case out <- received{msg, err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

func (s *redisSub) loop(ctx context.Context) {
	defer close(s.done)
	defer close(s.msgs)
	defer close(s.state)
	up := false
	setState := func(v bool) {
		if v != up {
			up = v
			sendState(s.state, v)
			if v {
				s.r.logger.Info("redis subscription up", "channel", s.channel)
			} else {
				s.r.logger.Warn("redis subscription down", "channel", s.channel)
			}
		}
	}
	defer s.closePS()
	backoff := subBackoffMin
	tick := time.NewTicker(subHealthInterval / 5)
	defer tick.Stop()
	for ctx.Err() == nil {
		ps := s.swap(ctx)
		if ps == nil {
			return
		}
		// One connection: a reader goroutine, and this loop for the health check.
		cctx, stop := context.WithCancel(ctx)
		in := make(chan received, 16)
		readerDone := make(chan struct{})
		go func() { defer close(readerDone); receive(cctx, ps, in) }()
		lastSeen := time.Now()
		var pingSent time.Time // zero: no health-check PING outstanding
		healthy := true
		for healthy && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case r := <-in:
				if r.err != nil {
					healthy = false
					break
				}
				lastSeen, pingSent = time.Now(), time.Time{}
				backoff = subBackoffMin
				switch m := r.msg.(type) {
				case *redis.Subscription:
					if m.Kind == "subscribe" && m.Channel == s.channel {
						setState(true)
					}
				case *redis.Message:
					select {
					case s.msgs <- []byte(m.Payload):
					case <-ctx.Done():
					}
				}
			case now := <-tick.C:
				switch {
				case !pingSent.IsZero() && now.Sub(pingSent) >= subDeadAfter:
					healthy = false // no answer to the health check: dead or stuck
				case pingSent.IsZero() && now.Sub(lastSeen) >= subHealthInterval:
					pingSent = now
					// The answer (a Pong) arrives through the reader; a write that fails
					// shows up there too, as the connection is closed.
					go func() { _ = ps.Ping(cctx) }()
				}
			}
		}
		// Close the connection (ending the read), then wait for the reader.
		s.closePS()
		stop()
		<-readerDone
		if ctx.Err() != nil {
			return
		}
		setState(false)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, subBackoffMax)
	}
}

// RedisLimiter is the Limiter backed by github.com/go-redis/redis_rate (GCRA in Redis, shared by
// every replica). It stores its state under "rate:" + key.
type RedisLimiter struct{ l *redis_rate.Limiter }

// NewRedisLimiter returns a limiter sharing r's connection.
func NewRedisLimiter(r *Redis) *RedisLimiter {
	return &RedisLimiter{l: redis_rate.NewLimiter(r.client)}
}

// Allow implements Limiter. A Redis error is returned as is (the caller fails closed).
func (l *RedisLimiter) Allow(ctx context.Context, key string, limit Limit) (Result, error) {
	if err := limit.validate(); err != nil {
		return Result{}, err
	}
	res, err := l.l.Allow(ctx, key, redis_rate.Limit{Rate: limit.Rate, Burst: limit.Burst, Period: limit.Period})
	if err != nil {
		return Result{}, wrap("rate limit", err)
	}
	out := Result{Allowed: res.Allowed > 0, Remaining: res.Remaining}
	if !out.Allowed {
		out.RetryAfter = max(res.RetryAfter, time.Millisecond)
	}
	return out, nil
}
