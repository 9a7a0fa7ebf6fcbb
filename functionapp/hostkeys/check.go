package hostkeys

import (
	"crypto/subtle"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Level is the authorization level a key grants, as in the Functions host.
type Level int

// Levels, from weakest to strongest.
const (
	Anonymous Level = iota // no key or an unknown key
	Function               // a host function key or one of this function's keys
	System                 // a system key: refused on function-level routes
	Admin                  // the master key
)

// String names the level.
func (l Level) String() string {
	switch l {
	case Function:
		return "function"
	case System:
		return "system"
	case Admin:
		return "admin"
	default:
		return "anonymous"
	}
}

// HeaderName is the request header carrying a function key.
const HeaderName = "x-functions-key"

// DefaultInterval is how long loaded key files are trusted before their stat is checked
// again. A key that is not recognised triggers a check at once.
const DefaultInterval = time.Second

// keySet is the parsed content of the key files.
type keySet struct {
	master       string
	system       []string
	hostFunction []string
	function     []string
}

func equal(a, b string) bool {
	return a != "" && len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func anyEqual(keys []string, k string) bool {
	found := false
	for _, v := range keys {
		if equal(v, k) {
			found = true // keep going: the time taken does not depend on which key matched
		}
	}
	return found
}

// level applies the host's matching order: master, system keys, host function keys, this
// function's keys (SecretManager.GetAuthorizationLevelAsync).
func (s *keySet) level(key string) Level {
	switch {
	case key == "":
		return Anonymous
	case equal(s.master, key):
		return Admin
	case anyEqual(s.system, key):
		return System
	case anyEqual(s.hostFunction, key), anyEqual(s.function, key):
		return Function
	}
	return Anonymous
}

// RequestKey returns the key a request presents, as the host reads it: the first
// x-functions-key header value when the header is present (even if empty), otherwise the
// first "code" query value.
func RequestKey(r *http.Request) string {
	if vals, ok := r.Header[http.CanonicalHeaderKey(HeaderName)]; ok {
		if len(vals) == 0 {
			return ""
		}
		return vals[0]
	}
	return r.URL.Query().Get("code")
}

// fileState identifies one version of a file for change detection.
type fileState struct {
	info os.FileInfo // nil when the file does not exist
}

func (a fileState) same(b fileState) bool {
	if a.info == nil || b.info == nil {
		return a.info == nil && b.info == nil
	}
	return os.SameFile(a.info, b.info) && a.info.Size() == b.info.Size() && a.info.ModTime().Equal(b.info.ModTime())
}

// Checker checks function keys against the secrets files in one directory and reloads them
// when they change. Its zero value is not usable; call NewChecker.
type Checker struct {
	hostPath, funcPath string
	interval           time.Duration
	logger             *slog.Logger

	mu      sync.Mutex
	keys    *keySet
	checked time.Time
	states  [2]fileState
	loaded  bool
}

// Options configure a Checker.
type Options struct {
	// Function is the function whose own keys are accepted ("mcp" when empty).
	Function string
	// Interval between stat checks of the key files; DefaultInterval when zero, every
	// request when negative.
	Interval time.Duration
	// Logger receives reload events (never a key). slog.Default() when nil.
	Logger *slog.Logger
}

// NewChecker returns a Checker for the secrets directory dir. Missing files mean no keys
// (every request is refused), not an error.
func NewChecker(dir string, opts Options) *Checker {
	fn := opts.Function
	if fn == "" {
		fn = "mcp"
	}
	iv := opts.Interval
	if iv == 0 {
		iv = DefaultInterval
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	return &Checker{
		hostPath: filepath.Join(dir, "host.json"),
		funcPath: filepath.Join(dir, fn+".json"),
		interval: iv,
		logger:   lg,
		keys:     &keySet{},
	}
}

// Level returns the authorization level key grants, re-reading the key files first when
// they may have changed: after Interval, or at once when key is not recognised.
func (c *Checker) Level(key string) Level {
	if key == "" {
		return Anonymous
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	refreshed := false
	if !c.loaded || now.Sub(c.checked) >= c.interval {
		c.refresh(now)
		refreshed = true
	}
	l := c.keys.level(key)
	if l == Anonymous && !refreshed {
		// A key written a moment ago must work at once: look at the files again.
		c.refresh(now)
		l = c.keys.level(key)
	}
	return l
}

// Allows reports whether the request passes the check for an authLevel "function" route:
// its key grants Function or Admin. System keys do not pass.
func (c *Checker) Allows(r *http.Request) bool {
	l := c.Level(RequestKey(r))
	return l == Function || l == Admin
}

// Middleware answers 401 with an empty body, as the host does, unless the request passes
// Allows; otherwise it calls next.
func (c *Checker) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.Allows(r) {
			c.logger.Info("function key check failed", "method", r.Method, "path", r.URL.Path)
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refresh stats both files and reloads them when either changed. c.mu is held.
func (c *Checker) refresh(now time.Time) {
	c.checked = now
	states := [2]fileState{stat(c.hostPath), stat(c.funcPath)}
	if c.loaded && states[0].same(c.states[0]) && states[1].same(c.states[1]) {
		return
	}
	c.states, c.loaded = states, true
	keys, err := c.load()
	if err != nil {
		// Fail closed: a file we cannot read or parse grants nothing until it is fixed.
		c.logger.Error("function keys unusable; refusing every request", "dir", filepath.Dir(c.hostPath), "err", err)
		c.keys = &keySet{}
		return
	}
	c.keys = keys
	c.logger.Info("function keys loaded", "dir", filepath.Dir(c.hostPath),
		"host_function_keys", len(keys.hostFunction), "function_keys", len(keys.function), "system_keys", len(keys.system))
}

func stat(path string) fileState {
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{}
	}
	return fileState{info: fi}
}

func (c *Checker) load() (*keySet, error) {
	ks := &keySet{}
	if data, err := readFile(c.hostPath); err != nil {
		return nil, err
	} else if data != nil {
		hs, err := ParseHostSecrets(data)
		if err != nil {
			return nil, err
		}
		if hs.MasterKey != nil {
			ks.master = hs.MasterKey.Value
		}
		ks.hostFunction = values(hs.FunctionKeys)
		ks.system = values(hs.SystemKeys)
	}
	if data, err := readFile(c.funcPath); err != nil {
		return nil, err
	} else if data != nil {
		fs, err := ParseFunctionSecrets(data)
		if err != nil {
			return nil, err
		}
		ks.function = values(fs.Keys)
	}
	return ks, nil
}

// readFile returns nil, nil when the file does not exist.
func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

func values(keys []Key) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if k.Value != "" {
			out = append(out, k.Value)
		}
	}
	return out
}
