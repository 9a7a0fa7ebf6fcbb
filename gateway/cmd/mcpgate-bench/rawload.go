package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"time"
)

// rawClient sends one fixed HTTP/1.1 request over a kept-alive connection and reads the
// response with the least work it can: the status line, Content-Length and the body. A load
// generator that costs as little as wrk per call matters on a 2-core machine, where it shares
// the CPUs with what it measures: net/http's client spends about 50 µs more per call and
// perturbs the targets it is compared across.
type rawClient struct {
	addr     string
	req      []byte
	conn     net.Conn
	br       *bufio.Reader
	deadline time.Time // every connection's I/O deadline (zero: none)
}

// newRawClient prepares a POST of body to u with headers (sorted, for a stable request).
func newRawClient(u string, headers map[string]string, body string) (*rawClient, error) {
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme != "http" || pu.Host == "" {
		return nil, fmt.Errorf("raw load generator: %q is not an http:// URL", u)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", pu.RequestURI(), pu.Host, len(body))
	keys := make([]string, 0, len(headers))
	for k := range headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s\r\n", k, headers[k])
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return &rawClient{addr: pu.Host, req: b.Bytes()}, nil
}

var errNoLength = errors.New("raw load generator: response without Content-Length")

// do sends the request and returns the response status (dialling again after an error).
func (c *rawClient) do(ctx context.Context) (int, error) {
	if c.conn == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return 0, err
		}
		if !c.deadline.IsZero() {
			_ = conn.SetDeadline(c.deadline)
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	status, err := c.roundTrip()
	if err != nil {
		c.close()
	}
	return status, err
}

func (c *rawClient) roundTrip() (int, error) {
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("raw load generator: bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("raw load generator: bad status line %q", line)
	}
	length, closing := -1, false
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, fmt.Errorf("raw load generator: bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			closing = true
		}
	}
	if length < 0 {
		return 0, errNoLength
	}
	if _, err := c.br.Discard(length); err != nil {
		return 0, err
	}
	if closing {
		c.close()
	}
	return status, nil
}

func (c *rawClient) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.br = nil, nil
	}
}

// requestHeaders are the MCP call's headers, with the target's own (credentials) added.
func requestHeaders(t target) map[string]string {
	h := map[string]string{
		"Content-Type":         "application/json",
		"Accept":               "application/json, text/event-stream",
		"Mcp-Protocol-Version": "2025-11-25",
	}
	for k, v := range t.headers {
		h[k] = v
	}
	return h
}
