// Command mcpgate-bench is the gateway's benchmark harness and a test helper.
//
//	mcpgate-bench run   [flags]   start redis-server, the function app, a plain
//	                              httputil.ReverseProxy hop and `mcpgate serve`, drive tools/call
//	                              at fixed concurrency against each, and print rps, p50, p99 and
//	                              peak RSS side by side (see BENCHMARKS.md)
//	mcpgate-bench hop   [flags]   run the plain reverse-proxy hop (the baseline: no auth, adds
//	                              the function key)
//	mcpgate-bench mint  [flags]   issue an access token straight into the grant store (Redis)
//	                              sealed with the gateway's session-key ring file, for a
//	                              synthetic user — tests and benchmarks only: whoever can read
//	                              the ring file can do this anyway
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
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
	fmt.Fprintln(os.Stderr, "usage: mcpgate-bench run|hop|mint [flags]  (-h for each)")
	os.Exit(2)
}
