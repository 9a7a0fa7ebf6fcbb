// Command mcpgate-bench is the gateway's benchmark harness and a test helper.
//
//	mcpgate-bench run   [flags]   start redis-server, the function app, a plain
//	                              httputil.ReverseProxy hop and `mcpgate serve`, drive tools/call
//	                              at fixed concurrency against each, and print rps, p50, p99 and
//	                              peak RSS side by side (see BENCHMARKS.md)
//	mcpgate-bench sse   [flags]   measure the legacy SSE bridge (see docs/sse.md): start
//	                              redis-server, the function app and two `mcpgate serve` replicas
//	                              sharing Redis, then print the SSE round trip (POST /mcp/message →
//	                              the answer's event on the stream) with the POST sent to the
//	                              replica holding the stream and to the other one, next to the
//	                              Streamable HTTP round trip (POST /mcp); and the RSS of a fresh
//	                              replica holding -idle idle SSE streams (one user each)
//	mcpgate-bench hop   [flags]   run the plain reverse-proxy hop (the baseline: no auth, adds
//	                              the function key)
//	mcpgate-bench mint  [flags]   issue an access token straight into the grant store (Redis)
//	                              sealed with the gateway's session-key ring file, for a
//	                              synthetic user — tests and benchmarks only: whoever can read
//	                              the ring file can do this anyway
//
// run and sse build the function app and the gateway as they ship (static, -trimpath, -s -w)
// unless -bin-dir names prebuilt binaries, write each child process's output to a file of a
// temporary work directory (shown when something fails), and mint their access tokens as mint
// does.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runBench(ctx, os.Args[2:])
	case "sse":
		err = runSSE(ctx, os.Args[2:])
	case "hop":
		err = runHop(ctx, os.Args[2:])
	case "mint":
		err = runMint(ctx, os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcpgate-bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: mcpgate-bench run|sse|hop|mint [flags]  (-h for each)")
	os.Exit(2)
}

// parseLevels parses the -c flag: comma-separated concurrency levels, each at least 1.
func parseLevels(s string) ([]int, error) {
	var levels []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad -c %q", s)
		}
		levels = append(levels, n)
	}
	return levels, nil
}
