package infracheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Project is azure.yaml as far as the checks need it.
type Project struct {
	Root string // directory holding azure.yaml
	Doc  *Node
}

// LoadProject reads root/azure.yaml.
func LoadProject(root string) (*Project, error) {
	src, err := os.ReadFile(filepath.Join(root, "azure.yaml"))
	if err != nil {
		return nil, fmt.Errorf("read azure.yaml: %w", err)
	}
	doc, err := ParseYAMLMap(string(src))
	if err != nil {
		return nil, fmt.Errorf("azure.yaml: %w", err)
	}
	return &Project{Root: root, Doc: doc}, nil
}

// Services returns the service names, sorted.
func (p *Project) Services() []string {
	var out []string
	if s := p.Doc.Get("services"); s != nil {
		for k := range s.Children {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// CheckPaths reports, per service: a missing `project` directory; for `language: docker`
// services, a Dockerfile (`docker.path`, relative to the project) or build context
// (`docker.context`, relative to the project) that does not exist; for `language: custom`,
// a missing `dist`; and hook scripts (`run:` of service hooks relative to the project folder,
// where azd runs them, and of project hooks relative to the root) that do not exist or are
// not executable. `dist` itself is produced by the prepackage hook: see CheckDistHook.
func (p *Project) CheckPaths() []error {
	var errs []error
	for _, name := range p.Services() {
		svc := p.Doc.Get("services", name)
		proj := svc.Str("project")
		if proj == "" {
			errs = append(errs, fmt.Errorf("azure.yaml: service %s has no project", name))
			continue
		}
		projDir := filepath.Join(p.Root, proj)
		if st, err := os.Stat(projDir); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("azure.yaml: service %s: project %s is not a directory", name, proj))
		}
		if svc.Str("language") == "docker" || svc.Get("docker") != nil {
			df := svc.Str("docker", "path")
			if df == "" {
				df = "Dockerfile"
			}
			if _, err := os.Stat(filepath.Join(projDir, df)); err != nil {
				errs = append(errs, fmt.Errorf("azure.yaml: service %s: Dockerfile %s (relative to %s) does not exist", name, df, proj))
			}
			ctx := svc.Str("docker", "context")
			if ctx == "" {
				ctx = "."
			}
			if st, err := os.Stat(filepath.Join(projDir, ctx)); err != nil || !st.IsDir() {
				errs = append(errs, fmt.Errorf("azure.yaml: service %s: docker context %s (relative to %s) is not a directory", name, ctx, proj))
			}
		}
		if svc.Str("language") == "custom" && svc.Str("dist") == "" {
			errs = append(errs, fmt.Errorf("azure.yaml: service %s: language custom needs dist", name))
		}
		if hooks := svc.Get("hooks"); hooks != nil {
			for ev, h := range hooks.Children {
				errs = append(errs, checkHookScript(fmt.Sprintf("service %s hook %s", name, ev), h.Str("run"), projDir)...)
			}
		}
	}
	if hooks := p.Doc.Get("hooks"); hooks != nil {
		for ev, h := range hooks.Children {
			errs = append(errs, checkHookScript("project hook "+ev, h.Str("run"), p.Root)...)
		}
	}
	return errs
}

func checkHookScript(what, run, dir string) []error {
	fields := strings.Fields(run)
	if len(fields) == 0 {
		return []error{fmt.Errorf("azure.yaml: %s has no run command", what)}
	}
	script := fields[0]
	if !strings.Contains(script, "/") {
		return nil // a command on PATH (e.g. `azd`), not a script in the repository
	}
	path := filepath.Join(dir, script)
	st, err := os.Stat(path)
	if err != nil {
		return []error{fmt.Errorf("azure.yaml: %s runs %s, which does not exist (resolved from %s)", what, script, dir)}
	}
	if st.Mode()&0o111 == 0 {
		return []error{fmt.Errorf("azure.yaml: %s runs %s, which is not executable", what, script)}
	}
	return nil
}

// HookScripts returns the repository paths of every hook script azure.yaml runs.
func (p *Project) HookScripts() []string {
	var out []string
	add := func(run, dir string) {
		if f := strings.Fields(run); len(f) > 0 && strings.Contains(f[0], "/") {
			out = append(out, filepath.Clean(filepath.Join(dir, f[0])))
		}
	}
	for _, name := range p.Services() {
		svc := p.Doc.Get("services", name)
		if hooks := svc.Get("hooks"); hooks != nil {
			for _, h := range hooks.Children {
				add(h.Str("run"), filepath.Join(p.Root, svc.Str("project")))
			}
		}
	}
	if hooks := p.Doc.Get("hooks"); hooks != nil {
		for _, h := range hooks.Children {
			add(h.Str("run"), p.Root)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// DistHook returns the prepackage hook of a custom-language service: the script path and the
// dist argument it passes. CheckDistHook reports when the argument differs from `dist`
// (azd zips `dist` as written, relative to the directory azd runs in: the repository root).
func (p *Project) DistHook(service string) (script, arg string, err error) {
	svc := p.Doc.Get("services", service)
	if svc == nil {
		return "", "", fmt.Errorf("azure.yaml: no service %s", service)
	}
	run := svc.Str("hooks", "prepackage", "run")
	f := strings.Fields(run)
	if len(f) != 2 {
		return "", "", fmt.Errorf("azure.yaml: service %s: prepackage hook must be `<script> <dist>`, got %q", service, run)
	}
	dist := svc.Str("dist")
	if filepath.Clean(f[1]) != filepath.Clean(dist) {
		return "", "", fmt.Errorf("azure.yaml: service %s: prepackage hook builds into %s but dist is %s", service, f[1], dist)
	}
	return filepath.Join(p.Root, svc.Str("project"), f[0]), dist, nil
}

var reYAMLVar = regexp.MustCompile(`\$\{([A-Za-z_]\w*)`)

// EnvRefs returns the ${VAR} references in azure.yaml's values.
func (p *Project) EnvRefs() []string {
	var out []string
	var walk func(n *Node)
	walk = func(n *Node) {
		for _, m := range reYAMLVar.FindAllStringSubmatch(n.Value, -1) {
			out = append(out, m[1])
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(p.Doc)
	sort.Strings(out)
	return slices.Compact(out)
}

var (
	reShellRef    = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)
	reShellAssign = regexp.MustCompile(`(?m)^\s*(?:export\s+|local\s+|readonly\s+)?([A-Za-z_][A-Za-z0-9_]*)=`)
	reShellFor    = regexp.MustCompile(`(?m)\bfor\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\b`)
	reShellRead   = regexp.MustCompile(`(?m)\bread\s+(?:-r\s+)?([A-Za-z_][A-Za-z0-9_]*)`)
)

// ShellEnvRefs returns the variables a POSIX shell script reads that it does not set itself
// (assignments, `for x in`, `read x`), i.e. what it expects from its environment. Comments
// are skipped; quoting is not interpreted.
func ShellEnvRefs(src string) []string {
	var code strings.Builder
	for _, l := range strings.Split(src, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		code.WriteString(l)
		code.WriteByte('\n')
	}
	text := code.String()
	local := map[string]bool{}
	for _, re := range []*regexp.Regexp{reShellAssign, reShellFor, reShellRead} {
		for _, m := range re.FindAllStringSubmatch(text, -1) {
			local[m[1]] = true
		}
	}
	var out []string
	for _, m := range reShellRef.FindAllStringSubmatch(text, -1) {
		if !local[m[1]] {
			out = append(out, m[1])
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// CLICall is one `go run <pkg> sub… --flag…` invocation in a shell script.
type CLICall struct {
	Subcommands []string
	Flags       []string
}

// CLICalls returns the invocations of `go run pkg` in a shell script (backslash
// continuations joined), with their subcommand words and --flag names.
func CLICalls(src, pkg string) []CLICall {
	joined := strings.ReplaceAll(src, "\\\n", " ")
	var out []CLICall
	for _, line := range strings.Split(joined, "\n") {
		f := strings.Fields(line)
		i := slices.Index(f, pkg)
		if i < 1 || f[i-1] != "run" {
			continue
		}
		var c CLICall
		for _, w := range f[i+1:] {
			switch {
			case strings.HasPrefix(w, "--"):
				name, _, _ := strings.Cut(strings.TrimPrefix(w, "--"), "=")
				c.Flags = append(c.Flags, name)
			case len(c.Flags) == 0 && !strings.ContainsAny(w, "\"$;|&"):
				c.Subcommands = append(c.Subcommands, w)
			}
		}
		out = append(out, c)
	}
	return out
}
