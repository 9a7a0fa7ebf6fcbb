package main

import (
	"context"
	"fmt"
	"io"

	"github.com/mcpgate/mcpgate/gateway/internal/config"
)

func runConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("config [--markdown]", "Print every setting of `mcpgate serve` with its environment variable and default.", stderr)
	markdown := fs.Bool("markdown", false, "print the README's Markdown table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var c config.Serve
	settings := c.Settings()
	if *markdown {
		fmt.Fprint(stdout, config.Markdown(settings))
		return nil
	}
	for _, s := range settings {
		fmt.Fprintf(stdout, "--%-26s %-34s default %q\n    %s\n", s.Flag, s.Env, s.Default, s.Usage)
	}
	return nil
}
