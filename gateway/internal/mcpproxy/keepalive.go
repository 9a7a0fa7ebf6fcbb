package mcpproxy

import (
	"io"
	"sync"
	"time"
)

// keepAliveComment is an SSE comment line. A comment is ignored by every SSE parser and,
// written only at a line boundary, never changes an event.
var keepAliveComment = []byte(": keep-alive\n\n")

// keepAliveBody wraps an event-stream body and, when the backend has been silent for the
// interval, yields an SSE comment so idle intermediaries (Azure's 230 s front end, Container
// Apps ingress) keep the stream open. A comment goes out only where it cannot split an event:
// after a complete event it is ": keep-alive\n\n"; after a complete line inside an event, only
// ": keep-alive\n" (no blank line, which would dispatch the event early); mid-line or right after
// a \r (whose \n may follow), nothing.
type keepAliveBody struct {
	src      io.ReadCloser
	interval time.Duration

	results chan readResult
	next    chan struct{} // tells the reader goroutine to read again
	stop    chan struct{}
	once    sync.Once

	pending []byte // unread rest of the last chunk
	buf     []byte // the reader goroutine's buffer
	err     error
	started bool
	timer   *time.Timer

	// Line state of the bytes passed on so far (SSE lines end in \r\n, \n or \r).
	midLine bool // some of the current line has been passed on
	inEvent bool // a non-empty line has been passed on since the last blank line
	afterCR bool // the last byte was \r (a following \n belongs to the same line end)
}

type readResult struct {
	n   int
	err error
}

func newKeepAliveBody(src io.ReadCloser, interval time.Duration) *keepAliveBody {
	return &keepAliveBody{src: src, interval: interval, results: make(chan readResult), next: make(chan struct{}, 1),
		stop: make(chan struct{}), buf: make([]byte, 32<<10)}
}

func (k *keepAliveBody) reader() {
	for {
		n, err := k.src.Read(k.buf)
		select {
		case k.results <- readResult{n, err}:
		case <-k.stop:
			return
		}
		if err != nil {
			return
		}
		select {
		case <-k.next:
		case <-k.stop:
			return
		}
	}
}

// Read implements io.Reader.
func (k *keepAliveBody) Read(p []byte) (int, error) {
	if len(k.pending) > 0 {
		n := copy(p, k.pending)
		k.pending = k.pending[n:]
		k.note(p[:n])
		if len(k.pending) == 0 {
			k.next <- struct{}{}
		}
		return n, nil
	}
	if k.err != nil {
		return 0, k.err
	}
	if !k.started {
		k.started = true
		k.timer = time.NewTimer(k.interval)
		go k.reader()
	} else {
		k.timer.Reset(k.interval)
	}
	for {
		select {
		case r := <-k.results:
			k.timer.Stop()
			if r.err != nil {
				k.err = r.err
			}
			if r.n == 0 {
				if k.err != nil {
					return 0, k.err
				}
				k.next <- struct{}{}
				k.timer.Reset(k.interval)
				continue
			}
			n := copy(p, k.buf[:r.n])
			k.note(p[:n])
			if n < r.n {
				k.pending = k.buf[n:r.n]
			} else if k.err == nil {
				k.next <- struct{}{}
			}
			return n, nil
		case <-k.timer.C:
			c := k.comment()
			if c == nil || len(p) < len(c) {
				k.timer.Reset(k.interval)
				continue
			}
			n := copy(p, c)
			k.note(p[:n])
			return n, nil
		}
	}
}

// note tracks line and event boundaries in the bytes passed on.
func (k *keepAliveBody) note(b []byte) {
	for _, c := range b {
		switch c {
		case '\n':
			if k.afterCR {
				k.afterCR = false
				continue
			}
			k.endLine()
		case '\r':
			k.afterCR = true
			k.endLine()
		default:
			k.afterCR = false
			k.midLine = true
			k.inEvent = true
		}
	}
}

func (k *keepAliveBody) endLine() {
	if !k.midLine {
		k.inEvent = false // a blank line ends the event
	}
	k.midLine = false
}

// comment returns the keep-alive to send now, or nil when the stream is mid-line.
func (k *keepAliveBody) comment() []byte {
	switch {
	case k.midLine, k.afterCR:
		return nil // mid-line, or a \r whose \n may still follow
	case k.inEvent:
		return keepAliveComment[:len(keepAliveComment)-1] // a comment line only: no dispatch
	default:
		return keepAliveComment
	}
}

// Close stops the reader and closes the backend body.
func (k *keepAliveBody) Close() error {
	k.once.Do(func() { close(k.stop) })
	if k.timer != nil {
		k.timer.Stop()
	}
	return k.src.Close()
}
