package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// This file holds what the benchmarks share about processes: building the binaries as they
// ship, starting and stopping the stack, and reading a process's CPU time and memory.

// buildShipped builds the function app and the gateway into dir exactly as they ship
// (gateway/Dockerfile, scripts/package-functionapp.sh): each module on its own (GOWORK=off),
// static (CGO_ENABLED=0), -trimpath, without symbol tables (-ldflags "-s -w"). How the binary is
// built changes its resident size: a cgo build links libc, and symbols move the layout.
func buildShipped(repo, dir string) error {
	for _, b := range []struct{ module, pkg, out string }{
		{"functionapp", "./cmd/handler", "handler"},
		{"gateway", "./cmd/mcpgate", "mcpgate"},
	} {
		fmt.Fprintf(os.Stderr, "building %s/%s (as shipped: static, -trimpath, -s -w)\n", b.module, b.pkg)
		out, err := filepath.Abs(filepath.Join(dir, b.out))
		if err != nil {
			return err
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, b.pkg)
		cmd.Dir, cmd.Stderr = filepath.Join(repo, b.module), os.Stderr
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s/%s: %w", b.module, b.pkg, err)
		}
	}
	return nil
}

// stack holds the child processes.
type stack struct {
	dir   string
	procs []*exec.Cmd
	logs  []string // each process's output file
	// grace is how long stop waits for a process after SIGTERM before killing its group
	// (default 5 s).
	grace time.Duration
}

// newStack makes a work directory for a stack (named after prefix, removed by close) and,
// unless *binDir already names a directory of prebuilt binaries, builds them as shipped into
// it and points *binDir there.
func newStack(prefix, repo string, binDir *string) (*stack, error) {
	work, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	if *binDir == "" {
		*binDir = filepath.Join(work, "bin")
		if err := buildShipped(repo, *binDir); err != nil {
			_ = os.RemoveAll(work)
			return nil, err
		}
	}
	return &stack{dir: work}, nil
}

// close stops the processes and removes the work directory.
func (s *stack) close() {
	s.stop()
	_ = os.RemoveAll(s.dir)
}

// start runs bin with its output in a file of the work directory (as a container runtime
// would collect it, and without making the load generator copy the gateway's access log).
func (s *stack) start(name, bin string, args, env []string) (int, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = s.dir
	logPath := filepath.Join(s.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return 0, err
	}
	defer f.Close() // the child keeps its own descriptor
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", name, err)
	}
	s.procs = append(s.procs, cmd)
	s.logs = append(s.logs, logPath)
	return cmd.Process.Pid, nil
}

// output returns the tail of every process's output, for error messages.
func (s *stack) output() string {
	var b strings.Builder
	for i, c := range s.procs {
		out, _ := os.ReadFile(s.logs[i])
		fmt.Fprintf(&b, "--- %s ---\n%s\n", filepath.Base(c.Path), tail(string(out), 2000))
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// stop ends the processes, the last started first.
func (s *stack) stop() {
	grace := s.grace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	for i := len(s.procs) - 1; i >= 0; i-- {
		c := s.procs[i]
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(grace):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

// backends are the processes behind the gateway: redis-server and the standalone function app.
type backends struct {
	redisURL  string
	redisPort int
	faURL     string // the function app's base URL
	faPID     int
	key       string // the function key "gateway"
	keyFile   string // a file holding key, for --function-key-file
}

// startBackends starts redis-server (no persistence, plus redisArgs) and the function app
// from binDir, with a fresh function key in its secrets. It does not wait for them.
func (s *stack) startBackends(binDir string, redisArgs ...string) (*backends, error) {
	be := &backends{key: randomKey(), keyFile: filepath.Join(s.dir, "function-key")}
	secrets := filepath.Join(s.dir, "secrets")
	if err := writeHostSecrets(secrets, be.key); err != nil {
		return nil, err
	}
	if err := os.WriteFile(be.keyFile, []byte(be.key+"\n"), 0o600); err != nil {
		return nil, err
	}
	be.redisPort = freePort()
	be.redisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", be.redisPort)
	if _, err := s.start("redis", "redis-server", append([]string{"--port", strconv.Itoa(be.redisPort), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "warning"}, redisArgs...), nil); err != nil {
		return nil, err
	}
	faPort := freePort()
	be.faURL = fmt.Sprintf("http://127.0.0.1:%d", faPort)
	pid, err := s.start("functionapp", filepath.Join(binDir, "handler"), nil, []string{
		"FUNCTIONAPP_LISTEN=127.0.0.1:" + strconv.Itoa(faPort), "FUNCTIONAPP_SECRETS_DIR=" + secrets,
		"SNIPPETS_DIR=" + filepath.Join(s.dir, "snippets"), "FUNCTIONS_CUSTOMHANDLER_PORT="})
	if err != nil {
		return nil, err
	}
	be.faPID = pid
	return be, nil
}

// serveArgs are the `mcpgate serve` arguments for a replica listening on port (metrics on
// mport) with public URL public, in front of be, with the session-key ring and client store
// in the work directory, dev login and the rate limit out of the way.
func (s *stack) serveArgs(be *backends, port, mport int, public string) []string {
	return []string{"serve",
		"--listen", "127.0.0.1:" + strconv.Itoa(port), "--public-url", public, "--metrics-listen", "127.0.0.1:" + strconv.Itoa(mport),
		"--backend-url", be.faURL, "--function-key-file", be.keyFile, "--redis-url", be.redisURL, "--dev",
		"--session-keys-file", s.ringFile(), "--clients-store", filepath.Join(s.dir, "clients"),
		"--rate-limit-rps", "1000000", "--rate-limit-burst", "1000000"}
}

// ringFile is the session-key ring file of the stack's gateways.
func (s *stack) ringFile() string { return filepath.Join(s.dir, "session-keys.json") }

// waitReady polls u (with Host header host, unless empty) until it answers below 500.
func waitReady(ctx context.Context, u, host string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("not ready within 30 s")
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomKey() string {
	b := make([]byte, 40)
	_, _ = rand.Read(b)
	return base64.URLEncoding.EncodeToString(b)
}

// writeHostSecrets writes the standalone function app's host.json (the Functions host's
// secrets format) with a master key and the host function key "gateway".
func writeHostSecrets(dir, key string) error {
	type k struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		Encrypted bool   `json:"encrypted"`
	}
	doc := map[string]any{"masterKey": k{Name: "master", Value: randomKey()}, "functionKeys": []k{{Name: "gateway", Value: key}}, "systemKeys": []k{}}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "host.json"), b, 0o600)
}

// cpuTime is the user+system CPU time of pid so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}

// peakRSS returns VmHWM (KiB) of pid.
func peakRSS(pid int) int64 { return procStatus(pid, "VmHWM:") }

// procStatus returns a kB field of /proc/pid/status.
func procStatus(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
