package store

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Memory is the in-memory Store for a single process (the local default). TTLs are honoured
// and pub/sub is in-process; its subscriptions are always up (State reports true), except that
// a subscriber too slow to drain its buffer sees false then true, as if it had reconnected.
type Memory struct {
	mu     sync.Mutex
	items  map[string]*memItem
	subs   map[string]map[*memSub]struct{}
	now    func() time.Time
	writes int
	closed bool
}

type memItem struct {
	val []byte
	set map[string]struct{}
	exp time.Time // zero: no expiry
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{items: map[string]*memItem{}, subs: map[string]map[*memSub]struct{}{}, now: time.Now}
}

// errClosed is returned by every call on a closed store.
var errClosed = errors.New("store: closed")

// errWrongType mirrors Redis' WRONGTYPE error.
var errWrongType = errors.New("store: operation against a key holding the wrong kind of value")

// item returns the live item at key (dropping it if expired). Caller holds m.mu.
func (m *Memory) item(key string) *memItem {
	it, ok := m.items[key]
	if !ok {
		return nil
	}
	if !it.exp.IsZero() && !m.now().Before(it.exp) {
		delete(m.items, key)
		return nil
	}
	return it
}

func (m *Memory) expiry(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return m.now().Add(ttl)
}

// sweep drops expired items so that unread keys do not pile up. It runs once the number of
// writes since the last sweep reaches the number of items (at least 1024), which keeps its
// cost constant per write.
func (m *Memory) sweep() {
	m.writes++
	if m.writes < max(1024, len(m.items)) {
		return
	}
	m.writes = 0
	for k := range m.items {
		m.item(k)
	}
}

func (m *Memory) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errClosed
	}
	return nil
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, key string) ([]byte, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	it := m.item(key)
	if it == nil {
		return nil, ErrNotFound
	}
	if it.set != nil {
		return nil, errWrongType
	}
	return bytes.Clone(it.val), nil
}

// Set implements Store.
func (m *Memory) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.sweep()
	m.items[key] = &memItem{val: bytes.Clone(val), exp: m.expiry(ttl)}
	return nil
}

// SetNX implements Store.
func (m *Memory) SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	if err := m.lock(); err != nil {
		return false, err
	}
	defer m.mu.Unlock()
	if m.item(key) != nil {
		return false, nil
	}
	m.sweep()
	m.items[key] = &memItem{val: bytes.Clone(val), exp: m.expiry(ttl)}
	return true, nil
}

// SetXX implements Store.
func (m *Memory) SetXX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	if err := m.lock(); err != nil {
		return false, err
	}
	defer m.mu.Unlock()
	it := m.item(key)
	if it == nil {
		return false, nil
	}
	if it.set != nil {
		return false, errWrongType
	}
	m.items[key] = &memItem{val: bytes.Clone(val), exp: m.expiry(ttl)}
	return true, nil
}

// GetDel implements Store.
func (m *Memory) GetDel(ctx context.Context, key string) ([]byte, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	it := m.item(key)
	if it == nil {
		return nil, ErrNotFound
	}
	if it.set != nil {
		return nil, errWrongType
	}
	delete(m.items, key)
	return it.val, nil
}

// Del implements Store.
func (m *Memory) Del(ctx context.Context, keys ...string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.items, k)
	}
	return nil
}

// Exists implements Store.
func (m *Memory) Exists(ctx context.Context, keys ...string) ([]bool, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	out := make([]bool, len(keys))
	for i, k := range keys {
		out[i] = m.item(k) != nil
	}
	return out, nil
}

// Expire implements Store.
func (m *Memory) Expire(ctx context.Context, ttl time.Duration, keys ...string) ([]bool, error) {
	if ttl <= 0 {
		return nil, errBadTTL
	}
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	out := make([]bool, len(keys))
	for i, k := range keys {
		if it := m.item(k); it != nil {
			it.exp = m.expiry(ttl)
			out[i] = true
		}
	}
	return out, nil
}

// SAdd implements Store.
func (m *Memory) SAdd(ctx context.Context, key, member string, ttl time.Duration) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	it := m.item(key)
	if it == nil {
		m.sweep()
		it = &memItem{set: map[string]struct{}{}}
		m.items[key] = it
	} else if it.set == nil {
		return errWrongType
	}
	it.set[member] = struct{}{}
	if ttl > 0 {
		it.exp = m.expiry(ttl)
	}
	return nil
}

// SRem implements Store.
func (m *Memory) SRem(ctx context.Context, key, member string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	it := m.item(key)
	if it == nil {
		return nil
	}
	if it.set == nil {
		return errWrongType
	}
	delete(it.set, member)
	if len(it.set) == 0 {
		delete(m.items, key)
	}
	return nil
}

// SMembers implements Store.
func (m *Memory) SMembers(ctx context.Context, key string) ([]string, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	it := m.item(key)
	if it == nil {
		return []string{}, nil
	}
	if it.set == nil {
		return nil, errWrongType
	}
	out := make([]string, 0, len(it.set))
	for k := range it.set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out, nil
}

// memSubBuffer is how many messages a subscriber may have pending.
const memSubBuffer = 256

type memSub struct {
	m       *Memory
	channel string
	msgs    chan []byte
	state   chan bool
	once    sync.Once
}

func (s *memSub) Messages() <-chan []byte { return s.msgs }
func (s *memSub) State() <-chan bool      { return s.state }

// Close ends the subscription and closes its channels.
func (s *memSub) Close() error {
	s.once.Do(func() {
		s.m.mu.Lock()
		delete(s.m.subs[s.channel], s)
		s.m.mu.Unlock()
		close(s.msgs)
		close(s.state)
	})
	return nil
}

// sendState sends v without blocking, dropping the oldest pending state if full.
func sendState(ch chan bool, v bool) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// Publish implements Store. A subscriber whose buffer is full loses the message and is told
// so through its State channel (false then true); it is not counted as a receiver.
func (m *Memory) Publish(ctx context.Context, channel string, msg []byte) (int64, error) {
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	var n int64
	for s := range m.subs[channel] {
		select {
		case s.msgs <- bytes.Clone(msg):
			n++
		default:
			sendState(s.state, false)
			sendState(s.state, true)
		}
	}
	return n, nil
}

// Subscribe implements Store. The subscription ends when ctx ends or Close is called.
func (m *Memory) Subscribe(ctx context.Context, channel string) (Subscription, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	s := &memSub{m: m, channel: channel, msgs: make(chan []byte, memSubBuffer), state: make(chan bool, 4)}
	s.state <- true
	if m.subs[channel] == nil {
		m.subs[channel] = map[*memSub]struct{}{}
	}
	m.subs[channel][s] = struct{}{}
	m.mu.Unlock()
	context.AfterFunc(ctx, func() { _ = s.Close() })
	return s, nil
}

// Ping implements Store.
func (m *Memory) Ping(ctx context.Context) error {
	if err := m.lock(); err != nil {
		return err
	}
	m.mu.Unlock()
	return nil
}

// Close implements Store: it ends every subscription; later calls fail.
func (m *Memory) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	var subs []*memSub
	for _, set := range m.subs {
		for s := range set {
			subs = append(subs, s)
		}
	}
	m.mu.Unlock()
	for _, s := range subs {
		_ = s.Close()
	}
	return nil
}
