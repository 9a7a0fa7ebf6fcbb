package config

import (
	"flag"
	"strings"
	"testing"
)

// TestSSELimits: the legacy SSE limits default to 10000 / 32 / 32, come from the environment
// or flags, and must be positive integers (the error names the variable).
func TestSSELimits(t *testing.T) {
	parse := func(env map[string]string, args ...string) (Serve, error) {
		var c Serve
		getenv := func(k string) string { return env[k] }
		if err := CheckEnv(c.Settings(), getenv); err != nil {
			return c, err
		}
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		Bind(fs, c.Settings(), getenv)
		if err := fs.Parse(append([]string{"--dev"}, args...)); err != nil {
			return c, err
		}
		return c, c.Validate()
	}
	c, err := parse(nil)
	if err != nil || c.SSEMaxStreams != 10000 || c.SSEMaxStreamsPerUser != 32 || c.SSEMaxPendingMessages != 32 {
		t.Fatalf("defaults: %d %d %d, %v", c.SSEMaxStreams, c.SSEMaxStreamsPerUser, c.SSEMaxPendingMessages, err)
	}
	c, err = parse(map[string]string{"MCPGATE_SSE_MAX_STREAMS": "500", "MCPGATE_SSE_MAX_STREAMS_PER_USER": "4",
		"MCPGATE_SSE_MAX_PENDING_MESSAGES": "8"}, "--sse-max-streams-per-user", "2")
	if err != nil || c.SSEMaxStreams != 500 || c.SSEMaxStreamsPerUser != 2 || c.SSEMaxPendingMessages != 8 {
		t.Fatalf("environment and flags: %d %d %d, %v", c.SSEMaxStreams, c.SSEMaxStreamsPerUser, c.SSEMaxPendingMessages, err)
	}
	for _, tc := range []struct {
		env, value string
	}{
		{"MCPGATE_SSE_MAX_STREAMS", "0"},
		{"MCPGATE_SSE_MAX_STREAMS", "-1"},
		{"MCPGATE_SSE_MAX_STREAMS", "lots"},
		{"MCPGATE_SSE_MAX_STREAMS_PER_USER", "0"},
		{"MCPGATE_SSE_MAX_STREAMS_PER_USER", "1.5"},
		{"MCPGATE_SSE_MAX_PENDING_MESSAGES", "-32"},
		{"MCPGATE_SSE_MAX_PENDING_MESSAGES", "99999999999999999999"},
	} {
		_, err := parse(map[string]string{tc.env: tc.value})
		if err == nil || !strings.Contains(err.Error(), tc.env) {
			t.Errorf("%s=%s: want an error naming the variable, got %v", tc.env, tc.value, err)
		}
	}
	if _, err := parse(nil, "--sse-max-pending-messages", "0"); err == nil ||
		!strings.Contains(err.Error(), "--sse-max-pending-messages (MCPGATE_SSE_MAX_PENDING_MESSAGES) must be a positive integer") {
		t.Errorf("flag 0: %v", err)
	}
}
