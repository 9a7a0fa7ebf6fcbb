package telemetry

import (
	"io"
	"sync"
	"time"
)

// BufferedWriter batches log lines: writes go to memory and reach the underlying writer every
// interval, when 32 KiB have accumulated, or on Flush/Close. It saves a write system call per
// access-log line on the request path (about 4% of the gateway's CPU per MCP call at c=1).
// A crash loses at most one interval of logs; call Close on shutdown.
type BufferedWriter struct {
	mu   sync.Mutex
	w    io.Writer
	buf  []byte
	err  error
	stop chan struct{}
	done chan struct{}
}

const bufferedWriterLimit = 32 << 10

// NewBufferedWriter starts a BufferedWriter over w flushing every interval (default 200 ms).
func NewBufferedWriter(w io.Writer, interval time.Duration) *BufferedWriter {
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	b := &BufferedWriter{w: w, buf: make([]byte, 0, bufferedWriterLimit), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				_ = b.Flush()
			}
		}
	}()
	return b
}

// Write buffers p (one log record per call with slog's handlers).
func (b *BufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) >= bufferedWriterLimit {
		b.flushLocked()
	}
	return len(p), nil
}

// Flush writes out what is buffered and returns the first write error seen so far.
func (b *BufferedWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return b.err
}

func (b *BufferedWriter) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	if _, err := b.w.Write(b.buf); err != nil && b.err == nil {
		b.err = err
	}
	b.buf = b.buf[:0]
}

// Close stops the flusher and flushes. Writes after Close still work (unbuffered timing:
// they are flushed by the next Flush or when the buffer fills).
func (b *BufferedWriter) Close() error {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
	return b.Flush()
}
