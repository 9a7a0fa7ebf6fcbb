package infracheck

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// CheckPackage reports what is wrong with a Flex Consumption custom-handler folder: `handler`
// must be a 64-bit x86-64 Linux ELF executable with its exec bit, host.json must start
// `handler` through the proxying custom handler with routePrefix "", and mcp/function.json
// must hold a function-level HTTP trigger.
func CheckPackage(dir string) []error {
	var errs []error
	bin := filepath.Join(dir, "handler")
	if st, err := os.Stat(bin); err != nil {
		errs = append(errs, fmt.Errorf("package: handler missing: %w", err))
	} else {
		if st.Mode()&0o111 == 0 {
			errs = append(errs, fmt.Errorf("package: handler has no exec bit (mode %v)", st.Mode()))
		}
		if err := checkELF(bin); err != nil {
			errs = append(errs, fmt.Errorf("package: handler: %w", err))
		}
	}
	var host struct {
		Version       string `json:"version"`
		CustomHandler *struct {
			Description struct {
				DefaultExecutablePath string `json:"defaultExecutablePath"`
			} `json:"description"`
			EnableProxyingHTTPRequest bool `json:"enableProxyingHttpRequest"`
		} `json:"customHandler"`
		Extensions struct {
			HTTP struct {
				RoutePrefix *string `json:"routePrefix"`
			} `json:"http"`
		} `json:"extensions"`
	}
	if err := readJSON(filepath.Join(dir, "host.json"), &host); err != nil {
		errs = append(errs, fmt.Errorf("package: host.json: %w", err))
	} else {
		switch {
		case host.Version != "2.0":
			errs = append(errs, fmt.Errorf("package: host.json version %q, want 2.0", host.Version))
		case host.CustomHandler == nil:
			errs = append(errs, errors.New("package: host.json has no customHandler"))
		default:
			if p := host.CustomHandler.Description.DefaultExecutablePath; p != "handler" {
				errs = append(errs, fmt.Errorf("package: host.json defaultExecutablePath %q, want handler", p))
			}
			if !host.CustomHandler.EnableProxyingHTTPRequest {
				errs = append(errs, errors.New("package: host.json must set customHandler.enableProxyingHttpRequest (streaming proxy)"))
			}
		}
		if rp := host.Extensions.HTTP.RoutePrefix; rp == nil || *rp != "" {
			errs = append(errs, errors.New(`package: host.json must set extensions.http.routePrefix to "" (MCP at /mcp, not /api/mcp)`))
		}
	}
	var fn struct {
		Bindings []binding `json:"bindings"`
	}
	if err := readJSON(filepath.Join(dir, "mcp", "function.json"), &fn); err != nil {
		errs = append(errs, fmt.Errorf("package: mcp/function.json: %w", err))
	} else if !slices.ContainsFunc(fn.Bindings, func(b binding) bool {
		return b.Type == "httpTrigger" && b.Direction == "in" && strings.EqualFold(b.AuthLevel, "function")
	}) {
		errs = append(errs, errors.New("package: mcp/function.json has no httpTrigger binding with authLevel function"))
	}
	return errs
}

// binding is one entry of function.json's bindings.
type binding struct {
	Type      string `json:"type"`
	Direction string `json:"direction"`
	AuthLevel string `json:"authLevel"`
}

func checkELF(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("not an ELF binary: %w", err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("built for %v/%v, want ELFCLASS64/EM_X86_64 (GOARCH=amd64)", f.Class, f.Machine)
	}
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return fmt.Errorf("OS ABI %v, want Linux (GOOS=linux)", f.OSABI)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("ELF type %v is not an executable", f.Type)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

var reReadmeEnv = regexp.MustCompile("^\\|\\s*`--[a-z0-9-]+`\\s*\\|\\s*`([A-Z0-9_]+)`\\s*\\|")

// ReadmeEnvVars returns the environment variables of README.md's configuration table
// (rows `| `--flag` | `ENV` | … |`).
func ReadmeEnvVars(readme string) []string {
	var out []string
	for _, l := range strings.Split(readme, "\n") {
		if m := reReadmeEnv.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

var reFrom = regexp.MustCompile(`(?i)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?`)

// CheckDockerfile reports a gateway Dockerfile whose build stage is not golang:1.26, that
// does not build ./cmd/mcpgate, whose final stage is not distroless/static or scratch, that
// copies anything but the build stage's output into the final image, or that runs as root.
func CheckDockerfile(src string) []error {
	var errs []error
	type stage struct {
		base, name string
		lines      []string
	}
	var stages []*stage
	for _, l := range strings.Split(src, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if m := reFrom.FindStringSubmatch(l); m != nil {
			stages = append(stages, &stage{base: m[1], name: m[2]})
			continue
		}
		if len(stages) == 0 {
			if !strings.HasPrefix(strings.ToUpper(l), "ARG ") {
				errs = append(errs, fmt.Errorf("dockerfile: %q before the first FROM", l))
			}
			continue
		}
		s := stages[len(stages)-1]
		s.lines = append(s.lines, l)
	}
	if len(stages) < 2 {
		return append(errs, errors.New("dockerfile: want a multi-stage build (golang build stage + minimal final stage)"))
	}
	build, final := stages[0], stages[len(stages)-1]
	if !strings.HasPrefix(build.base, "golang:1.26") {
		errs = append(errs, fmt.Errorf("dockerfile: build stage FROM %s, want golang:1.26", build.base))
	}
	if !slices.ContainsFunc(build.lines, func(l string) bool {
		return strings.HasPrefix(l, "RUN ") && strings.Contains(l, "go build") && strings.Contains(l, "./cmd/mcpgate")
	}) {
		errs = append(errs, errors.New("dockerfile: the build stage does not `go build … ./cmd/mcpgate`"))
	}
	if !(final.base == "scratch" || strings.HasPrefix(final.base, "gcr.io/distroless/static")) {
		errs = append(errs, fmt.Errorf("dockerfile: final stage FROM %s, want gcr.io/distroless/static… or scratch", final.base))
	}
	user := ""
	for _, l := range final.lines {
		up := strings.ToUpper(l)
		switch {
		case strings.HasPrefix(up, "RUN "):
			errs = append(errs, fmt.Errorf("dockerfile: final stage runs %q: it must only copy the binary", l))
		case strings.HasPrefix(up, "ADD "):
			errs = append(errs, fmt.Errorf("dockerfile: final stage uses ADD: %q", l))
		case strings.HasPrefix(up, "COPY ") && !strings.Contains(l, "--from="+build.name) && build.name != "":
			errs = append(errs, fmt.Errorf("dockerfile: final stage copies %q from outside the build stage", l))
		case strings.HasPrefix(up, "USER "):
			user = strings.TrimSpace(l[5:])
		}
	}
	switch u, _, _ := strings.Cut(user, ":"); {
	case user == "" && !strings.HasSuffix(final.base, ":nonroot"):
		errs = append(errs, errors.New("dockerfile: final stage sets no non-root USER"))
	case u == "root" || u == "0":
		errs = append(errs, fmt.Errorf("dockerfile: final stage runs as %s", user))
	}
	return errs
}
