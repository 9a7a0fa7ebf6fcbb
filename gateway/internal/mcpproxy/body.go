package mcpproxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"time"
)

// ErrBodyTooLarge is returned by ReadBody for a body over its limit.
var ErrBodyTooLarge = errors.New("body too large")

// initialBodyAlloc caps what the declared Content-Length reserves before any byte arrives.
const initialBodyAlloc = 64 << 10

// ReadBody reads r's body, at most limit bytes (more gives ErrBodyTooLarge), within timeout
// (exceeded: an error matching os.ErrDeadlineExceeded). Memory grows with what arrives, not
// with the Content-Length the client declares, and the connection's read deadline is cleared
// again before returning (a deadline left behind would end the request's context while its
// response streams).
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, ErrBodyTooLarge
	}
	if r.Body == nil || r.Body == http.NoBody {
		return []byte{}, nil
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(timeout)) == nil {
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(min(r.ContentLength, initialBodyAlloc)))
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, ErrBodyTooLarge
	}
	return buf.Bytes(), nil
}

// progressWriter moves the connection's write deadline d ahead of every write and flush of
// the response.
type progressWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

// withWriteProgress wraps w. net/http clears the connection's write deadline after each
// request (server.go, after finishRequest), so the last deadline set here does not reach the
// next request on the connection.
func withWriteProgress(w http.ResponseWriter, d time.Duration) http.ResponseWriter {
	return &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: d}
}

func (p *progressWriter) Write(b []byte) (int, error) {
	_ = p.rc.SetWriteDeadline(time.Now().Add(p.d))
	return p.ResponseWriter.Write(b)
}

// FlushError lets http.ResponseController (ReverseProxy's flushes) reach the connection.
func (p *progressWriter) FlushError() error {
	_ = p.rc.SetWriteDeadline(time.Now().Add(p.d))
	return p.rc.Flush()
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }
