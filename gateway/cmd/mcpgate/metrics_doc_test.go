package main

import (
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/gateway/internal/config"
	"github.com/mcpgate/mcpgate/gateway/internal/telemetry"
)

// TestMetricsReferenceIsCurrent wires a gateway (in-memory store, development login) and
// checks that docs/metrics.md lists every metric it registers, with its type, labels and help.
func TestMetricsReferenceIsCurrent(t *testing.T) {
	var cfg config.Serve
	settings := cfg.Settings()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	config.Bind(fs, settings, func(string) string { return "" })
	state := t.TempDir()
	if err := fs.Parse([]string{"--dev", "--metrics-listen", "",
		"--function-key", "test-key",
		"--session-keys-file", filepath.Join(state, "session-keys.json"),
		"--clients-store", filepath.Join(state, "clients")}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gw, err := newGateway(t.Context(), &cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.close()
	metrics := gw.registry.Metrics()
	if len(metrics) < 20 {
		t.Fatalf("only %d metrics recorded: %+v", len(metrics), metrics)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	if want := telemetry.MetricsMarkdown(metrics); !strings.Contains(string(doc), want) {
		t.Fatalf("docs/metrics.md's table is stale; the gateway registers:\n%s", want)
	}
}
