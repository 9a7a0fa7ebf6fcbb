// Command handler is the mcpgate function app: an MCP server with snippet tools, run by the
// Azure Functions host as a custom handler (host mode) or on its own with the host's
// function-key check emulated (standalone mode). Run `handler --help` for its options.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/functionapp/hostkeys"
	"github.com/mcpgate/mcpgate/functionapp/snippets"
	"github.com/mcpgate/mcpgate/functionapp/storage"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "handler:", err)
		os.Exit(1)
	}
}

// run starts the server and blocks until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stderr *os.File) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)

	// Listen first: connections that arrive while the rest starts wait in the backlog.
	ln, err := net.Listen("tcp", cfg.addr())
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	h, err := newHandler(cfg, logger)
	if err != nil {
		ln.Close()
		return err
	}
	mode := "standalone"
	if cfg.hostMode() {
		mode = "host"
	}
	logger.Info("function app listening", "addr", ln.Addr().String(), "mode", mode, "version", version)
	return serve(ctx, ln, h, logger)
}

// newHandler builds the HTTP handler: /mcp and the host's ping at /, behind the function-key
// check in standalone mode.
func newHandler(cfg *config, logger *slog.Logger) (http.Handler, error) {
	store, desc, err := storage.Open(cfg.storage)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	logger.Info("snippet storage", "backend", desc)

	mux := http.NewServeMux()
	mux.Handle("/mcp", snippets.NewHandler(snippets.NewServer(store, logger, version), logger))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	if cfg.hostMode() {
		return logRequests(mux, logger), nil
	}

	path, created, err := hostkeys.EnsureSecrets(cfg.secretsDir, cfg.function)
	if err != nil {
		return nil, fmt.Errorf("function keys: %w", err)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if created {
		logger.Info("generated a function key named "+hostkeys.DefaultKeyName, "file", path)
	} else {
		logger.Info("function keys", "dir", filepath.Dir(path))
	}
	checker := hostkeys.NewChecker(cfg.secretsDir, hostkeys.Options{Function: cfg.function, Logger: logger})
	return logRequests(checker.Middleware(mux), logger), nil
}

func serve(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// statusWriter records the response status for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests logs each request at debug level: method, path (never the query, which may
// hold ?code=), status and duration.
func logRequests(next http.Handler, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !logger.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		logger.LogAttrs(r.Context(), slog.LevelDebug, "request", slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Int("status", sw.status), slog.Duration("duration", time.Since(start)))
	})
}
