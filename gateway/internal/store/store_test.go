package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/mcpgate/mcpgate/gateway/internal/store/redistest"
)

// backends runs fn against the in-memory store and against a real redis-server.
func backends(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Run("memory", func(t *testing.T) {
		st := store.NewMemory()
		t.Cleanup(func() { _ = st.Close() })
		fn(t, st)
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		st, err := store.NewRedis(t.Context(), store.RedisOptions{URL: srv.URL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		fn(t, st)
	})
}

func TestKey(t *testing.T) {
	if got := store.Key("grant", "abc"); got != "mcpgate:grant:abc" {
		t.Fatalf("Key = %q", got)
	}
}

func TestStore(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		k := func(s string) string { return store.Key("test", t.Name(), s) }
		tests := []struct {
			name string
			run  func(t *testing.T)
		}{
			{"values larger than a connection buffer", func(t *testing.T) {
				big := make([]byte, 20*store.RedisBufferSize+123)
				for i := range big {
					big[i] = byte(i*7 + i>>9)
				}
				must(t, st.Set(ctx, k("big"), big, time.Minute))
				got, err := st.Get(ctx, k("big"))
				if err != nil || !bytes.Equal(got, big) {
					t.Fatalf("Get of a %d-byte value: %d bytes, %v", len(big), len(got), err)
				}
				got, err = st.GetDel(ctx, k("big"))
				if err != nil || !bytes.Equal(got, big) {
					t.Fatalf("GetDel of a %d-byte value: %d bytes, %v", len(big), len(got), err)
				}
			}},
			{"get missing", func(t *testing.T) {
				if _, err := st.Get(ctx, k("missing")); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("Get missing: %v, want ErrNotFound", err)
				}
			}},
			{"set get", func(t *testing.T) {
				must(t, st.Set(ctx, k("a"), []byte("one"), 0))
				got, err := st.Get(ctx, k("a"))
				if err != nil || string(got) != "one" {
					t.Fatalf("Get = %q, %v", got, err)
				}
				must(t, st.Set(ctx, k("a"), []byte("two"), time.Minute))
				got, _ = st.Get(ctx, k("a"))
				if string(got) != "two" {
					t.Fatalf("overwrite: %q", got)
				}
			}},
			{"binary value", func(t *testing.T) {
				v := []byte{0, 1, 2, 255, '\n', 0}
				must(t, st.Set(ctx, k("bin"), v, 0))
				got, _ := st.Get(ctx, k("bin"))
				if !slices.Equal(got, v) {
					t.Fatalf("binary round trip: %v", got)
				}
			}},
			{"ttl expires", func(t *testing.T) {
				must(t, st.Set(ctx, k("ttl"), []byte("x"), 50*time.Millisecond))
				waitFor(t, func() bool { _, err := st.Get(ctx, k("ttl")); return errors.Is(err, store.ErrNotFound) })
			}},
			{"setnx", func(t *testing.T) {
				ok, err := st.SetNX(ctx, k("nx"), []byte("first"), time.Minute)
				if err != nil || !ok {
					t.Fatalf("first SetNX = %v, %v", ok, err)
				}
				ok, err = st.SetNX(ctx, k("nx"), []byte("second"), time.Minute)
				if err != nil || ok {
					t.Fatalf("second SetNX = %v, %v", ok, err)
				}
				got, _ := st.Get(ctx, k("nx"))
				if string(got) != "first" {
					t.Fatalf("SetNX overwrote: %q", got)
				}
			}},
			{"setnx after expiry", func(t *testing.T) {
				must(t, st.Set(ctx, k("nxe"), []byte("old"), 30*time.Millisecond))
				waitFor(t, func() bool {
					ok, err := st.SetNX(ctx, k("nxe"), []byte("new"), time.Minute)
					return err == nil && ok
				})
			}},
			{"setxx", func(t *testing.T) {
				ok, err := st.SetXX(ctx, k("xx"), []byte("v"), time.Minute)
				if err != nil || ok {
					t.Fatalf("SetXX on missing key = %v, %v", ok, err)
				}
				if _, err := st.Get(ctx, k("xx")); !errors.Is(err, store.ErrNotFound) {
					t.Fatal("SetXX created a key")
				}
				must(t, st.Set(ctx, k("xx"), []byte("old"), time.Minute))
				ok, err = st.SetXX(ctx, k("xx"), []byte("new"), time.Minute)
				if err != nil || !ok {
					t.Fatalf("SetXX on existing key = %v, %v", ok, err)
				}
				if got, _ := st.Get(ctx, k("xx")); string(got) != "new" {
					t.Fatalf("after SetXX: %q", got)
				}
			}},
			{"getdel single use", func(t *testing.T) {
				must(t, st.Set(ctx, k("gd"), []byte("code"), time.Minute))
				got, err := st.GetDel(ctx, k("gd"))
				if err != nil || string(got) != "code" {
					t.Fatalf("GetDel = %q, %v", got, err)
				}
				if _, err := st.GetDel(ctx, k("gd")); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("second GetDel: %v", err)
				}
			}},
			{"getdel concurrent: exactly one wins", func(t *testing.T) {
				must(t, st.Set(ctx, k("race"), []byte("v"), time.Minute))
				var wg sync.WaitGroup
				var mu sync.Mutex
				wins := 0
				for range 16 {
					wg.Go(func() {
						if _, err := st.GetDel(ctx, k("race")); err == nil {
							mu.Lock()
							wins++
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				if wins != 1 {
					t.Fatalf("%d winners", wins)
				}
			}},
			{"del", func(t *testing.T) {
				must(t, st.Set(ctx, k("d1"), []byte("1"), 0))
				must(t, st.Set(ctx, k("d2"), []byte("2"), 0))
				must(t, st.Del(ctx, k("d1"), k("d2"), k("never")))
				must(t, st.Del(ctx))
				for _, key := range []string{k("d1"), k("d2")} {
					if _, err := st.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
						t.Fatalf("%s after Del: %v", key, err)
					}
				}
			}},
			{"sets", func(t *testing.T) {
				m, err := st.SMembers(ctx, k("none"))
				if err != nil || len(m) != 0 {
					t.Fatalf("SMembers missing = %v, %v", m, err)
				}
				must(t, st.SAdd(ctx, k("s"), "b", time.Minute))
				must(t, st.SAdd(ctx, k("s"), "a", time.Minute))
				must(t, st.SAdd(ctx, k("s"), "a", time.Minute))
				m, err = st.SMembers(ctx, k("s"))
				slices.Sort(m)
				if err != nil || !slices.Equal(m, []string{"a", "b"}) {
					t.Fatalf("SMembers = %v, %v", m, err)
				}
				must(t, st.SRem(ctx, k("s"), "a"))
				must(t, st.SRem(ctx, k("s"), "zzz"))
				must(t, st.SRem(ctx, k("nothing"), "a"))
				m, _ = st.SMembers(ctx, k("s"))
				if !slices.Equal(m, []string{"b"}) {
					t.Fatalf("after SRem: %v", m)
				}
			}},
			{"set ttl", func(t *testing.T) {
				must(t, st.SAdd(ctx, k("st"), "x", 50*time.Millisecond))
				waitFor(t, func() bool { m, err := st.SMembers(ctx, k("st")); return err == nil && len(m) == 0 })
			}},
			{"exists", func(t *testing.T) {
				must(t, st.Set(ctx, k("e1"), []byte("1"), 0))
				must(t, st.SAdd(ctx, k("e2"), "m", 0))
				must(t, st.Set(ctx, k("gone"), []byte("x"), 30*time.Millisecond))
				waitFor(t, func() bool { _, err := st.Get(ctx, k("gone")); return errors.Is(err, store.ErrNotFound) })
				got, err := st.Exists(ctx, k("e1"), k("never"), k("e2"), k("gone"), k("e1"))
				if err != nil || !slices.Equal(got, []bool{true, false, true, false, true}) {
					t.Fatalf("Exists = %v, %v", got, err)
				}
				if got, err := st.Exists(ctx); err != nil || len(got) != 0 {
					t.Fatalf("Exists of no keys = %v, %v", got, err)
				}
			}},
			{"exists across pipeline batches", func(t *testing.T) {
				keys := make([]string, 1234)
				want := make([]bool, len(keys))
				for i := range keys {
					keys[i] = k(fmt.Sprint(i))
					if i%7 == 3 {
						must(t, st.Set(ctx, keys[i], []byte("v"), time.Minute))
						want[i] = true
					}
				}
				got, err := st.Exists(ctx, keys...)
				if err != nil || !slices.Equal(got, want) {
					t.Fatalf("Exists of %d keys: %d answers, equal %v, %v", len(keys), len(got), slices.Equal(got, want), err)
				}
			}},
			{"expire", func(t *testing.T) {
				must(t, st.Set(ctx, k("x1"), []byte("1"), 0))
				must(t, st.Set(ctx, k("x2"), []byte("2"), time.Hour))
				got, err := st.Expire(ctx, 40*time.Millisecond, k("x1"), k("never"), k("x2"))
				if err != nil || !slices.Equal(got, []bool{true, false, true}) {
					t.Fatalf("Expire = %v, %v", got, err)
				}
				if _, err := st.Get(ctx, k("never")); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("Expire created a missing key: %v", err)
				}
				waitFor(t, func() bool {
					e, err := st.Exists(ctx, k("x1"), k("x2"))
					return err == nil && !e[0] && !e[1]
				})
				must(t, st.Set(ctx, k("x3"), []byte("3"), 40*time.Millisecond))
				if got, err := st.Expire(ctx, time.Hour, k("x3")); err != nil || !got[0] {
					t.Fatalf("Expire to extend = %v, %v", got, err)
				}
				time.Sleep(100 * time.Millisecond) // past the first ttl: the key must still be there
				if v, err := st.Get(ctx, k("x3")); err != nil || string(v) != "3" {
					t.Fatalf("extended key = %q, %v", v, err)
				}
				if _, err := st.Expire(ctx, 0, k("x3")); err == nil {
					t.Fatal("Expire with ttl 0 succeeded; want an error (a zero ttl is not a deletion)")
				}
			}},
			{"ping", func(t *testing.T) { must(t, st.Ping(ctx)) }},
			{"pubsub", func(t *testing.T) {
				sub, err := st.Subscribe(ctx, k("chan"))
				if err != nil {
					t.Fatal(err)
				}
				defer sub.Close()
				waitState(t, sub, true)
				for i := range 3 {
					if n, err := st.Publish(ctx, k("chan"), fmt.Appendf(nil, "m%d", i)); err != nil || n != 1 {
						t.Fatalf("Publish to one subscriber: %d receivers, %v", n, err)
					}
				}
				if n, err := st.Publish(ctx, k("other"), []byte("not for us")); err != nil || n != 0 {
					t.Fatalf("Publish to nobody: %d receivers, %v", n, err)
				}
				for i := range 3 {
					if got := recv(t, sub); string(got) != fmt.Sprintf("m%d", i) {
						t.Fatalf("message %d = %q", i, got)
					}
				}
				_ = sub.Close()
				if _, ok := <-sub.Messages(); ok {
					t.Fatal("Messages not closed after Close")
				}
			}},
		}
		for _, tc := range tests {
			t.Run(tc.name, tc.run)
		}
	})
}

// TestRedisSubscriptionDropAndRecover kills redis-server under a live subscription: State must
// report false, and true again after a restart on the same port, with messages flowing again.
func TestRedisSubscriptionDropAndRecover(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	st, err := store.NewRedis(ctx, store.RedisOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sub, err := st.Subscribe(ctx, "mcpgate:test:drop")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	waitState(t, sub, true)
	mustPublish(t, st, "mcpgate:test:drop", "before")
	if got := recv(t, sub); string(got) != "before" {
		t.Fatalf("got %q", got)
	}

	srv.Kill()
	waitState(t, sub, false)
	if err := st.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded with redis-server killed")
	}

	srv.Restart(t)
	waitState(t, sub, true)
	mustPublish(t, st, "mcpgate:test:drop", "after")
	if got := recv(t, sub); string(got) != "after" {
		t.Fatalf("got %q", got)
	}
}

// TestRedisSubscribeWhileDown: a subscription made while Redis is down comes up later.
func TestRedisSubscribeWhileDown(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	st, err := store.NewRedis(ctx, store.RedisOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv.Kill()
	sub, err := st.Subscribe(ctx, "mcpgate:test:late")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	srv.Restart(t)
	waitState(t, sub, true)
	mustPublish(t, st, "mcpgate:test:late", "hi")
	if got := recv(t, sub); string(got) != "hi" {
		t.Fatalf("got %q", got)
	}
}

func TestNewRedisErrors(t *testing.T) {
	ctx := t.Context()
	if _, err := store.NewRedis(ctx, store.RedisOptions{URL: "http://user:hunter2@example"}); err == nil {
		t.Fatal("accepted http URL")
	} else if contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
	srv := redistest.Start(t)
	srv.Kill()
	if _, err := store.NewRedis(ctx, store.RedisOptions{URL: srv.URL()}); err == nil {
		t.Fatal("NewRedis succeeded with no server")
	}
}

func TestMemoryClosed(t *testing.T) {
	st := store.NewMemory()
	sub, _ := st.Subscribe(t.Context(), "c")
	_ = st.Close()
	if _, ok := <-sub.Messages(); ok {
		t.Fatal("subscription survived Close")
	}
	if err := st.Ping(t.Context()); err == nil {
		t.Fatal("Ping on closed store succeeded")
	}
}

func TestMemorySlowSubscriberSeesDrop(t *testing.T) {
	st := store.NewMemory()
	ctx := t.Context()
	sub, _ := st.Subscribe(ctx, "c")
	waitState(t, sub, true)
	for range 300 {
		mustPublish(t, st, "c", "x")
	}
	waitState(t, sub, false)
	waitState(t, sub, true)
}

func mustPublish(t *testing.T, st store.Store, channel, msg string) {
	t.Helper()
	if _, err := st.Publish(t.Context(), channel, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond for up to 5 s (a bound against hangs, not a timing assertion).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitState(t *testing.T, sub store.Subscription, want bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case v, ok := <-sub.State():
			if !ok {
				t.Fatal("state channel closed")
			}
			if v == want {
				return
			}
		case <-timeout:
			t.Fatalf("state %v not reported within 10s", want)
		}
	}
}

func recv(t *testing.T, sub store.Subscription) []byte {
	t.Helper()
	select {
	case m, ok := <-sub.Messages():
		if !ok {
			t.Fatal("messages channel closed")
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return nil
	}
}
