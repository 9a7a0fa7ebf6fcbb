package infracheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// KnownRoles maps the built-in Azure role definition ids that infra/ may assign to their names
// (reference/azure.md §4.1). A GUID outside this table is a typo or an unreviewed privilege.
var KnownRoles = map[string]string{
	"b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
	"ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
	"7f951dda-4ed3-4680-a7ca-43fe172d538d": "AcrPull",
	"4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
	"b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
	"3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
	"de139f84-1756-47ae-9be6-808fbbe84772": "Website Contributor",
}

const identityType = "Microsoft.ManagedIdentity/userAssignedIdentities@"

var (
	reSymPrincipal    = regexp.MustCompile(`^([A-Za-z_]\w*)\.properties\.principalId$`)
	reModulePrincipal = regexp.MustCompile(`^([A-Za-z_]\w*)\.outputs\.([A-Za-z_]\w*)$`)
	reIdent           = regexp.MustCompile(`^[A-Za-z_]\w*$`)
)

// CheckRoleAssignments reports role assignments whose principal is not a declared
// user-assigned identity (`sym.properties.principalId`), a declared param, or a declared
// module's output, and role ids that are missing or unknown.
func CheckRoleAssignments(f *BicepFile) []error {
	var errs []error
	for _, r := range f.Roles {
		where := fmt.Sprintf("%s:%d role assignment %s", f.Path, r.Line, r.Symbol)
		switch p := r.PrincipalID; {
		case p == "":
			errs = append(errs, fmt.Errorf("%s: no principalId", where))
		case reSymPrincipal.MatchString(p):
			sym := reSymPrincipal.FindStringSubmatch(p)[1]
			res, ok := Find(f.Resources, sym)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: principalId refers to %q, which is not a resource declared in this file", where, sym))
			} else if !strings.HasPrefix(res.Type, identityType) {
				errs = append(errs, fmt.Errorf("%s: principalId refers to %q of type %s, not a user-assigned managed identity", where, sym, res.Type))
			}
		case reModulePrincipal.MatchString(p):
			sym := reModulePrincipal.FindStringSubmatch(p)[1]
			if !slices.ContainsFunc(f.Modules, func(m ModuleCall) bool { return m.Symbol == sym }) {
				errs = append(errs, fmt.Errorf("%s: principalId refers to module %q, which is not declared in this file", where, sym))
			}
		case reIdent.MatchString(p):
			if !Has(f.Params, p) {
				errs = append(errs, fmt.Errorf("%s: principalId %q is not a param of this file", where, p))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: principalId %q is not an identity, module output or param the checker understands", where, p))
		}
		if r.RoleID == "" {
			errs = append(errs, fmt.Errorf("%s: no literal role definition GUID (write subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '<guid>'))", where))
		} else if _, ok := KnownRoles[r.RoleID]; !ok {
			errs = append(errs, fmt.Errorf("%s: role %s is not one of the reviewed roles in infracheck.KnownRoles", where, r.RoleID))
		}
	}
	return errs
}

// CheckEnvSet reports names of required that f does not set to a non-empty value in a
// one-line `{ name: …, value: … }` entry.
func CheckEnvSet(f *BicepFile, required []string) []error {
	var errs []error
	for _, name := range required {
		p, ok := f.Pair(name)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: %s is not set (expected a one-line { name: '%s', value: … } entry)", f.Path, name, name))
		case p.Value == "''" || p.Value == `""`:
			errs = append(errs, fmt.Errorf("%s:%d: %s is set to an empty value", f.Path, p.Line, name))
		}
	}
	return errs
}

// CheckEnvValue reports when name is not set to exactly the Bicep expression want.
func CheckEnvValue(f *BicepFile, name, want string) error {
	p, ok := f.Pair(name)
	if !ok {
		return fmt.Errorf("%s: %s is not set", f.Path, name)
	}
	if p.Value != want {
		return fmt.Errorf("%s:%d: %s is %s, want %s", f.Path, p.Line, name, p.Value, want)
	}
	return nil
}

// CheckEnvAbsent reports any of forbidden that f sets.
func CheckEnvAbsent(f *BicepFile, forbidden []string) []error {
	var errs []error
	for _, name := range forbidden {
		if p, ok := f.Pair(name); ok {
			errs = append(errs, fmt.Errorf("%s:%d: %s must not be set here", f.Path, p.Line, name))
		}
	}
	return errs
}

// CheckOutputs reports names that main does not declare as outputs.
func CheckOutputs(main *BicepFile, names []string) []error {
	var errs []error
	for _, n := range names {
		if !Has(main.Outputs, n) {
			errs = append(errs, fmt.Errorf("%s: output %s is used but not declared", main.Path, n))
		}
	}
	return errs
}

var reOutputRef = regexp.MustCompile(`\b([A-Za-z_]\w*)!?\.outputs\.\??([A-Za-z_]\w*)`)

// CheckModules reports, for every module call in f: a module file that does not exist, a
// passed param the module does not declare, a required module param (no default) that is
// not passed, and a `sym.outputs.NAME` reference to an output the module does not declare.
func CheckModules(f *BicepFile) []error {
	var errs []error
	mods := map[string]*BicepFile{}
	for _, m := range f.Modules {
		path := filepath.Join(filepath.Dir(f.Path), m.Path)
		mf, err := ParseBicepFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: module %s: %s does not exist", f.Path, m.Line, m.Symbol, path))
			continue
		}
		mods[m.Symbol] = mf
		for _, p := range m.Params {
			if !Has(mf.Params, p) {
				errs = append(errs, fmt.Errorf("%s:%d: module %s passes param %s, which %s does not declare", f.Path, m.Line, m.Symbol, p, m.Path))
			}
		}
		for _, p := range mf.Params {
			if !p.HasDefault && !slices.Contains(m.Params, p.Name) {
				errs = append(errs, fmt.Errorf("%s:%d: module %s does not pass required param %s of %s", f.Path, m.Line, m.Symbol, p.Name, m.Path))
			}
		}
	}
	for i, line := range strings.Split(f.Text, "\n") {
		for _, ref := range reOutputRef.FindAllStringSubmatch(stripComment(line), -1) {
			mf, ok := mods[ref[1]]
			if !ok {
				continue // not a module of this file (or reported above)
			}
			if !Has(mf.Outputs, ref[2]) {
				errs = append(errs, fmt.Errorf("%s:%d: %s.outputs.%s: %s declares no output %s", f.Path, i+1, ref[1], ref[2], mf.Path, ref[2]))
			}
		}
	}
	return errs
}

var reServiceTag = regexp.MustCompile(`'azd-service-name':\s*'([^']+)'`)

// ServiceTags returns the azd-service-name tag values found in the files.
func ServiceTags(files []*BicepFile) []string {
	var out []string
	for _, f := range files {
		for _, m := range reServiceTag.FindAllStringSubmatch(f.Text, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// CheckGraphExtension reports files that declare Microsoft.Graph resources without the
// `extension` declaration, or an extension alias that bicepconfig.json does not define.
func CheckGraphExtension(files []*BicepFile, bicepconfig string) []error {
	var errs []error
	for _, f := range files {
		graph := slices.ContainsFunc(f.Resources, func(s Symbol) bool { return strings.HasPrefix(s.Type, "Microsoft.Graph/") })
		if graph && len(f.Extensions) == 0 {
			errs = append(errs, fmt.Errorf("%s: Microsoft.Graph resources need `extension microsoftGraphV1`", f.Path))
		}
		for _, e := range f.Extensions {
			if !strings.Contains(bicepconfig, `"`+e+`"`) {
				errs = append(errs, fmt.Errorf("%s: extension %s is not defined in bicepconfig.json", f.Path, e))
			}
		}
	}
	return errs
}

// ParseBicepDir scans every .bicep file under dir.
func ParseBicepDir(dir string) ([]*BicepFile, error) {
	var files []*BicepFile
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".bicep") {
			return err
		}
		f, err := ParseBicepFile(path)
		if err != nil {
			return err
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	return files, nil
}
