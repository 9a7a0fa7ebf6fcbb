// Command mcpgate is the OAuth 2.1 gateway for remote MCP servers on Azure Functions.
//
//	mcpgate serve      run the gateway (OAuth authorization server + MCP proxy)
//	mcpgate keys       list and rotate the function key the gateway injects
//	mcpgate secrets    create and rotate the session-key ring
//	mcpgate sessions   list and revoke sessions
//	mcpgate config     print the configuration reference
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand of mcpgate.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the gateway (OAuth authorization server and MCP proxy)", runServe},
		{"keys", "list and rotate the function key (mcpgate keys --help)", runKeys},
		{"secrets", "create and rotate the session-key ring (mcpgate secrets --help)", runSecrets},
		{"sessions", "list and revoke sessions (mcpgate sessions --help)", runSessions},
		{"config", "print the configuration reference (--markdown for the README table)", runConfig},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "mcpgate — OAuth 2.1 gateway for remote MCP servers on Azure Functions")
	fmt.Fprintln(w, "\nUsage: mcpgate <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `mcpgate <command> --help` for the flags of a command. Every flag can also be set")
	fmt.Fprintln(w, "with the environment variable shown in its help (flags win).")
}

// errUsage marks errors already reported with usage text.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				return 2
			default:
				fmt.Fprintf(stderr, "mcpgate %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "mcpgate: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// newFlagSet returns a flag set that prints its usage to stderr with a summary line.
func newFlagSet(name, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("mcpgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: mcpgate %s\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and maps a bad flag to errUsage (already reported by the flag set).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		fs.Usage()
		return errUsage
	}
	return nil
}
