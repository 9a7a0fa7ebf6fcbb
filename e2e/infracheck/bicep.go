// Package infracheck reads mcpgate's deployment sources (Bicep, azure.yaml, hook scripts, the
// Dockerfile, the function app package) and reports mistakes that would otherwise only show
// during `azd up`. There is no Bicep compiler and no azd on the build machines, so this is a
// deliberately small, line-based scanner, NOT a Bicep or YAML parser: it understands the
// subset of syntax the files in infra/ use (one declaration per line, `{ name: 'X', value: Y }`
// environment entries on one line, role assignments as `Microsoft.Authorization/roleAssignments`
// resource blocks). Its unit tests feed it broken inputs to show each check can fail.
package infracheck

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Symbol is a declared Bicep name: a param, var, output, resource or module.
type Symbol struct {
	Name string
	Type string // resource type with API version, module path, or param/output type
	Line int
	// Existing marks `resource x '…' existing = …`.
	Existing bool
	// HasDefault marks a param declared with a default value.
	HasDefault bool
}

// NameValue is one `{ name: 'NAME', value: EXPR }` (or secretRef) entry written on one line:
// a container environment variable or an app setting.
type NameValue struct {
	Name  string
	Value string
	Line  int
}

// RoleAssignment is one Microsoft.Authorization/roleAssignments resource block.
type RoleAssignment struct {
	Symbol      string
	PrincipalID string // the principalId expression as written
	RoleID      string // the role definition GUID, when written as a literal
	Line        int
}

// ModuleCall is one `module sym 'path' = { … params: { … } }` block.
type ModuleCall struct {
	Symbol string
	Path   string
	Params []string // names passed under params:
	Line   int
}

// BicepFile is what the scanner found in one .bicep file.
type BicepFile struct {
	Path      string
	Text      string
	Params    []Symbol
	Vars      []Symbol
	Outputs   []Symbol
	Resources []Symbol
	Modules   []ModuleCall
	Pairs     []NameValue
	Roles     []RoleAssignment
	// Extensions lists `extension NAME` declarations.
	Extensions []string
}

var (
	reParam     = regexp.MustCompile(`^param\s+([A-Za-z_]\w*)\s+(\S+)(\s*=.*)?$`)
	reVar       = regexp.MustCompile(`^var\s+([A-Za-z_]\w*)\s*=`)
	reOutput    = regexp.MustCompile(`^output\s+([A-Za-z_]\w*)\s+(\S+)\s*=`)
	reResource  = regexp.MustCompile(`^resource\s+([A-Za-z_]\w*)\s+'([^']+)'\s+(existing\s+)?=`)
	reModule    = regexp.MustCompile(`^module\s+([A-Za-z_]\w*)\s+'([^']+)'\s*=`)
	reExtension = regexp.MustCompile(`^extension\s+([A-Za-z_]\w*)`)
	rePair      = regexp.MustCompile(`\{\s*name:\s*'([^']+)'\s*,\s*(?:value|secretRef):\s*(.+?)\s*\}`)
	rePrincipal = regexp.MustCompile(`^\s*principalId:\s*(.+?)\s*$`)
	reRoleGUID  = regexp.MustCompile(`roleDefinitions'\s*,\s*'([0-9a-fA-F-]{36})'`)
	reParamsKey = regexp.MustCompile(`^\s*([A-Za-z_]\w*)\s*:`)
)

// ParseBicepFile reads and scans one file.
func ParseBicepFile(path string) (*BicepFile, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read bicep: %w", err)
	}
	return ScanBicep(path, string(src)), nil
}

// ScanBicep scans Bicep source. Declarations must start at column 0, as `bicep format` writes them.
func ScanBicep(path, src string) *BicepFile {
	f := &BicepFile{Path: path, Text: src}
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		line := stripComment(lines[i])
		n := i + 1
		switch {
		case reParam.MatchString(line):
			m := reParam.FindStringSubmatch(line)
			f.Params = append(f.Params, Symbol{Name: m[1], Type: m[2], Line: n, HasDefault: m[3] != ""})
		case reVar.MatchString(line):
			f.Vars = append(f.Vars, Symbol{Name: reVar.FindStringSubmatch(line)[1], Line: n})
		case reOutput.MatchString(line):
			m := reOutput.FindStringSubmatch(line)
			f.Outputs = append(f.Outputs, Symbol{Name: m[1], Type: m[2], Line: n})
		case reResource.MatchString(line):
			m := reResource.FindStringSubmatch(line)
			f.Resources = append(f.Resources, Symbol{Name: m[1], Type: m[2], Line: n, Existing: m[3] != ""})
			if strings.HasPrefix(m[2], "Microsoft.Authorization/roleAssignments@") {
				f.Roles = append(f.Roles, scanRole(m[1], n, block(lines, i)))
			}
		case reModule.MatchString(line):
			m := reModule.FindStringSubmatch(line)
			f.Modules = append(f.Modules, ModuleCall{Symbol: m[1], Path: m[2], Line: n, Params: moduleParams(block(lines, i))})
		case reExtension.MatchString(line):
			f.Extensions = append(f.Extensions, reExtension.FindStringSubmatch(line)[1])
		}
		for _, m := range rePair.FindAllStringSubmatch(line, -1) {
			f.Pairs = append(f.Pairs, NameValue{Name: m[1], Value: m[2], Line: n})
		}
	}
	return f
}

// stripComment removes a trailing // comment that is not inside a string (good enough for
// the files in infra/: URLs containing // are always inside quotes).
func stripComment(line string) string {
	inStr := false
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\'':
			inStr = !inStr
		case !inStr && strings.HasPrefix(line[i:], "//"):
			return strings.TrimRight(line[:i], " \t")
		}
	}
	return line
}

// block returns the lines of the brace-delimited body that starts on lines[start].
func block(lines []string, start int) []string {
	depth := 0
	opened := false
	for i := start; i < len(lines); i++ {
		for _, c := range braces(stripComment(lines[i])) {
			if c == '{' {
				depth++
				opened = true
			} else {
				depth--
			}
		}
		if opened && depth <= 0 {
			return lines[start : i+1]
		}
	}
	return lines[start:]
}

// braces returns the { and } of line that are outside single-quoted strings, ignoring
// Bicep's ${…} interpolation braces.
func braces(line string) []byte {
	var out []byte
	inStr := false
	interp := 0
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'' && interp == 0:
			inStr = !inStr
		case inStr && c == '$' && i+1 < len(line) && line[i+1] == '{':
			interp++
			i++
		case inStr && interp > 0 && c == '}':
			interp--
		case !inStr && (c == '{' || c == '}'):
			out = append(out, c)
		}
	}
	return out
}

func scanRole(sym string, line int, body []string) RoleAssignment {
	r := RoleAssignment{Symbol: sym, Line: line}
	for _, l := range body {
		l = stripComment(l)
		if m := rePrincipal.FindStringSubmatch(l); m != nil && r.PrincipalID == "" {
			r.PrincipalID = m[1]
		}
		if m := reRoleGUID.FindStringSubmatch(l); m != nil && r.RoleID == "" {
			r.RoleID = strings.ToLower(m[1])
		}
	}
	return r
}

// moduleParams returns the keys directly inside the `params: { … }` object of a module body.
func moduleParams(body []string) []string {
	var out []string
	depth, paramsDepth := 0, -1
	for _, raw := range body {
		l := stripComment(raw)
		if paramsDepth < 0 && depth == 1 && strings.HasPrefix(strings.TrimSpace(l), "params:") {
			paramsDepth = depth + 1
		} else if paramsDepth > 0 && depth == paramsDepth {
			if m := reParamsKey.FindStringSubmatch(l); m != nil {
				out = append(out, m[1])
			}
		}
		for _, c := range braces(l) {
			if c == '{' {
				depth++
			} else {
				depth--
				if paramsDepth > 0 && depth < paramsDepth {
					paramsDepth = -2 // done: ignore later objects
				}
			}
		}
	}
	return out
}

// Has reports whether the file declares name among syms.
func Has(syms []Symbol, name string) bool {
	_, ok := Find(syms, name)
	return ok
}

// Find returns the symbol called name.
func Find(syms []Symbol, name string) (Symbol, bool) {
	for _, s := range syms {
		if s.Name == name {
			return s, true
		}
	}
	return Symbol{}, false
}

// Pair returns the name/value entry called name.
func (f *BicepFile) Pair(name string) (NameValue, bool) {
	for _, p := range f.Pairs {
		if p.Name == name {
			return p, true
		}
	}
	return NameValue{}, false
}
