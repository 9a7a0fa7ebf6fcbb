package store_test

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/store"
	"github.com/mcpgate/mcpgate/gateway/internal/store/redistest"
)

// slowLink is a TCP proxy to redis-server whose server-to-client direction can pause in the
// middle of a large write (a big message arriving slowly, as over TLS to a managed Redis) or
// go silent altogether (a connection that is up but stuck): network conditions a local
// redis-server does not produce by itself.
type slowLink struct {
	ln        net.Listener
	target    string
	stallBig  atomic.Int64 // pause this long in the middle of the next write over 16 KiB (once)
	silent    atomic.Bool  // forward nothing from the server
	mu        sync.Mutex
	conns     []net.Conn
	addrCount atomic.Int32 // connections made
}

func startSlowLink(t *testing.T, target string) *slowLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &slowLink{ln: ln, target: target}
	t.Cleanup(func() {
		_ = ln.Close()
		l.mu.Lock()
		for _, c := range l.conns {
			_ = c.Close()
		}
		l.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			l.addrCount.Add(1)
			l.mu.Lock()
			l.conns = append(l.conns, c, s)
			l.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); _ = s.Close() }()
			go l.serverToClient(c, s)
		}
	}()
	return l
}

func (l *slowLink) serverToClient(c, s net.Conn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			for l.silent.Load() {
				time.Sleep(10 * time.Millisecond)
			}
			chunk := buf[:n]
			if n > 16<<10 {
				if d := time.Duration(l.stallBig.Swap(0)); d > 0 {
					if _, err := c.Write(chunk[:n/2]); err != nil {
						return
					}
					time.Sleep(d)
					chunk = chunk[n/2:]
				}
			}
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (l *slowLink) url() string { return "redis://" + l.ln.Addr().String() + "/0" }

// TestRedisSubscriptionSlowLargeMessage: a large message whose second half arrives 1.2 s
// after its first (longer than the quiet time before a health check) is delivered whole, and
// the subscription does not drop. A read deadline firing in the middle of the message used to
// leave its rest on the connection: the message was lost and the subscription reconnected,
// while PUBLISH had already told the sender that one subscriber received it.
func TestRedisSubscriptionSlowLargeMessage(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	link := startSlowLink(t, srv.Addr)
	sub := subscribe(t, link.url(), "mcpgate:test:slow")
	direct := open(t, srv.URL())
	conns := link.addrCount.Load() // the store's first PING, and the subscription
	link.stallBig.Store(int64(1200 * time.Millisecond))
	big := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)
	if n, err := direct.Publish(ctx, "mcpgate:test:slow", big); err != nil || n != 1 {
		t.Fatalf("Publish: %d receivers, %v", n, err)
	}
	if got := recv(t, sub); !bytes.Equal(got, big) {
		t.Fatalf("large message: got %d bytes, want %d", len(got), len(big))
	}
	select {
	case v := <-sub.State():
		t.Fatalf("subscription state changed to %v during a slow message", v)
	default:
	}
	mustPublish(t, direct, "mcpgate:test:slow", "after")
	if got := recv(t, sub); string(got) != "after" {
		t.Fatalf("next message = %q", got)
	}
	if n := link.addrCount.Load(); n != conns {
		t.Fatalf("the subscription reconnected (%d connections, %d before)", n, conns)
	}
}

// TestRedisSubscriptionStuckConnection: a connection that stays open but stops answering is
// found by the health check: State reports false within a few seconds, and true again once
// the link answers, with messages flowing.
func TestRedisSubscriptionStuckConnection(t *testing.T) {
	srv := redistest.Start(t)
	link := startSlowLink(t, srv.Addr)
	sub := subscribe(t, link.url(), "mcpgate:test:stuck")
	direct := open(t, srv.URL())
	link.silent.Store(true)
	waitState(t, sub, false)
	link.silent.Store(false)
	waitState(t, sub, true)
	mustPublish(t, direct, "mcpgate:test:stuck", "again")
	if got := recv(t, sub); string(got) != "again" {
		t.Fatalf("after recovery: %q", got)
	}
}

func open(t *testing.T, url string) store.Store {
	t.Helper()
	st, err := store.NewRedis(t.Context(), store.RedisOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func subscribe(t *testing.T, url, channel string) store.Subscription {
	t.Helper()
	sub, err := open(t, url).Subscribe(t.Context(), channel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	waitState(t, sub, true)
	return sub
}
