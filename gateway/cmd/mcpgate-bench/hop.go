package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"
)

// runHop serves a plain httputil.ReverseProxy in front of the backend: the harness's baseline.
// It adds the function key (the backend needs it) and nothing else.
func runHop(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("hop", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address (loopback)")
	backend := fs.String("backend", "http://127.0.0.1:7071", "backend base URL")
	keyFile := fs.String("key-file", "", "file holding the function key")
	_ = fs.Parse(args)
	target, err := url.Parse(*backend)
	if err != nil {
		return fmt.Errorf("backend URL: %w", err)
	}
	key := ""
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("read key file: %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		if key != "" {
			pr.Out.Header.Set("X-Functions-Key", key)
		}
	}}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Printf("listening on http://%s\n", l.Addr())
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
