package infracheck

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// wantErrs fails unless errs has exactly one error containing each of want, and no others.
func wantErrs(t *testing.T, errs []error, want ...string) {
	t.Helper()
	left := slices.Clone(errs)
	for _, w := range want {
		i := slices.IndexFunc(left, func(e error) bool { return strings.Contains(e.Error(), w) })
		if i < 0 {
			t.Errorf("no error mentions %q; got %v", w, errors.Join(errs...))
			continue
		}
		left = slices.Delete(left, i, i+1)
	}
	for _, e := range left {
		t.Errorf("unexpected error: %v", e)
	}
}

func parse(t *testing.T, path string) *BicepFile {
	t.Helper()
	f, err := ParseBicepFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestScanBicep(t *testing.T) {
	f := parse(t, "testdata/bicep/mod.bicep")
	if len(f.Params) != 3 || f.Params[0].HasDefault || !f.Params[1].HasDefault {
		t.Errorf("params = %+v", f.Params)
	}
	if len(f.Outputs) != 1 || f.Outputs[0].Name != "url" {
		t.Errorf("outputs = %+v", f.Outputs)
	}
	m := parse(t, "testdata/bicep/main.bicep")
	if len(m.Modules) != 3 || !slices.Equal(m.Modules[0].Params, []string{"required", "optional", "nested"}) {
		t.Errorf("modules = %+v", m.Modules)
	}
}

func TestCheckRoleAssignments(t *testing.T) {
	f := parse(t, "testdata/bicep/roles.bicep")
	if len(f.Roles) != 6 {
		t.Fatalf("found %d role assignments, want 6: %+v", len(f.Roles), f.Roles)
	}
	wantErrs(t, CheckRoleAssignments(f),
		`"gatewayIdentty", which is not a resource declared`,
		`"vault" of type Microsoft.KeyVault/vaults@2023-07-01, not a user-assigned managed identity`,
		`role 8e3af657-a8ff-443c-a75c-2fe8c4bcb635 is not one of the reviewed roles`,
		`principalId "deployerId" is not a param`,
	)
}

func TestCheckEnv(t *testing.T) {
	f := parse(t, "testdata/bicep/env.bicep")
	wantErrs(t, CheckEnvSet(f, []string{"MCPGATE_PUBLIC_URL", "MCPGATE_REDIS_URL", "MCPGATE_KEYVAULT_URL", "MCPGATE_REDIS_ENTRA"}),
		"MCPGATE_REDIS_URL is set to an empty value",
		"MCPGATE_KEYVAULT_URL is not set",
	)
	wantErrs(t, CheckEnvAbsent(f, []string{"FUNCTIONS_WORKER_RUNTIME", "WEBSITE_RUN_FROM_PACKAGE"}), "FUNCTIONS_WORKER_RUNTIME must not be set")
	if _, ok := f.Pair("IGNORED"); ok {
		t.Error("an entry inside a // comment was read")
	}
	if err := CheckEnvValue(f, "MCPGATE_REDIS_ENTRA", "'true'"); err != nil {
		t.Error(err)
	}
	if err := CheckEnvValue(f, "MCPGATE_REDIS_ENTRA", "'false'"); err == nil {
		t.Error("CheckEnvValue accepted a wrong value")
	}
}

func TestCheckModulesAndOutputs(t *testing.T) {
	f := parse(t, "testdata/bicep/main.bicep")
	wantErrs(t, CheckModules(f),
		"module wrong passes param requried",
		"module wrong does not pass required param required",
		"module missing: testdata/bicep/does-not-exist.bicep does not exist",
		"good.outputs.uri: testdata/bicep/mod.bicep declares no output uri",
	)
	wantErrs(t, CheckOutputs(f, []string{"URL", "SAFE", "GATEWAY_URL"}), "output GATEWAY_URL is used but not declared")
}

func TestCheckGraphExtension(t *testing.T) {
	withExt := ScanBicep("a.bicep", "extension microsoftGraphV1\nresource app 'Microsoft.Graph/applications@v1.0' = {\n}\n")
	without := ScanBicep("b.bicep", "resource app 'Microsoft.Graph/applications@v1.0' = {\n}\n")
	cfg := `{"extensions": {"microsoftGraphV1": "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0"}}`
	wantErrs(t, CheckGraphExtension([]*BicepFile{withExt, without}, cfg), "b.bicep: Microsoft.Graph resources need")
	wantErrs(t, CheckGraphExtension([]*BicepFile{withExt}, `{}`), "extension microsoftGraphV1 is not defined")
}

func TestParseYAMLMap(t *testing.T) {
	doc, err := ParseYAMLMap("# c\nname: x # trailing\nservices:\n  gw:\n    project: ./gateway\n    docker:\n      path: \"./Dockerfile\"\n  fn:\n    dist: 'a b'\nhooks:\n  pre:\n    run: ./x.sh\n")
	if err != nil {
		t.Fatal(err)
	}
	if doc.Str("name") != "x" || doc.Str("services", "gw", "docker", "path") != "./Dockerfile" ||
		doc.Str("services", "fn", "dist") != "a b" || doc.Str("hooks", "pre", "run") != "./x.sh" {
		t.Errorf("parsed %+v", doc)
	}
	for _, file := range []string{"testdata/azure-bad.yaml", "testdata/azure-list.yaml"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseYAMLMap(string(src)); err == nil {
			t.Errorf("%s: parsed without error", file)
		}
	}
	if _, err := ParseYAMLMap("a: 1\na: 2\n"); err == nil {
		t.Error("duplicate key accepted")
	}
}

// writeTree creates files under dir; a name ending in "/" is a directory, "*" marks an
// executable file.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "*") {
			name, mode = strings.TrimSuffix(name, "*"), 0o755
		}
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
}

const projectYAML = `name: t
services:
  gateway:
    project: ./gateway
    host: containerapp
    language: docker
    docker:
      path: ./Dockerfile
      context: ..
  functionapp:
    project: ./functionapp
    host: function
    language: custom
    dist: functionapp/dist
    hooks:
      prepackage:
        shell: sh
        run: ../hooks/pkg.sh functionapp/dist
hooks:
  postprovision:
    run: ./hooks/post.sh ${SOME_OUTPUT}
`

func TestProjectChecks(t *testing.T) {
	good := map[string]string{
		"azure.yaml":         projectYAML,
		"gateway/Dockerfile": "FROM scratch\n",
		"functionapp/":       "",
		"hooks/pkg.sh*":      "#!/bin/sh\n",
		"hooks/post.sh*":     "#!/bin/sh\n",
	}
	load := func(t *testing.T, files map[string]string) *Project {
		t.Helper()
		dir := t.TempDir()
		writeTree(t, dir, files)
		p, err := LoadProject(dir)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("good", func(t *testing.T) {
		p := load(t, good)
		wantErrs(t, p.CheckPaths())
		script, dist, err := p.DistHook("functionapp")
		if err != nil || dist != "functionapp/dist" || !strings.HasSuffix(script, "hooks/pkg.sh") {
			t.Errorf("DistHook = %q, %q, %v", script, dist, err)
		}
		if refs := p.EnvRefs(); !slices.Equal(refs, []string{"SOME_OUTPUT"}) {
			t.Errorf("EnvRefs = %v", refs)
		}
		if hs := p.HookScripts(); len(hs) != 2 {
			t.Errorf("HookScripts = %v", hs)
		}
	})
	t.Run("broken", func(t *testing.T) {
		files := map[string]string{
			"azure.yaml": strings.NewReplacer("./functionapp", "./function-app", "path: ./Dockerfile", "path: ./Containerfile",
				"language: custom\n    dist: functionapp/dist\n", "language: custom\n").Replace(projectYAML),
			"gateway/Dockerfile": "FROM scratch\n",
			"hooks/post.sh":      "#!/bin/sh\n", // not executable; hooks/pkg.sh is missing
		}
		p := load(t, files)
		wantErrs(t, p.CheckPaths(),
			"service functionapp: project ./function-app is not a directory",
			"service gateway: Dockerfile ./Containerfile (relative to ./gateway) does not exist",
			"service functionapp: language custom needs dist",
			"service functionapp hook prepackage runs ../hooks/pkg.sh, which does not exist",
			"project hook postprovision runs ./hooks/post.sh, which is not executable",
		)
		if _, _, err := p.DistHook("functionapp"); err == nil {
			t.Error("DistHook accepted a hook whose argument differs from dist")
		}
	})
}

func TestShellEnvRefs(t *testing.T) {
	src := `#!/bin/sh
# $IN_COMMENT is not read
set -eu
n=1
: "${KEYVAULT_URL:?missing}"
for f in a b; do echo "$f"; done
until go run x --url "$GATEWAY_URL" --n $n; do n=$((n + 1)); done
echo "${MCP_ENDPOINT}" "$0" "$1"
`
	if got := ShellEnvRefs(src); !slices.Equal(got, []string{"GATEWAY_URL", "KEYVAULT_URL", "MCP_ENDPOINT"}) {
		t.Errorf("ShellEnvRefs = %v", got)
	}
}

const goodHostJSON = `{"version":"2.0","extensions":{"http":{"routePrefix":""}},
 "customHandler":{"description":{"defaultExecutablePath":"handler"},"enableProxyingHttpRequest":true}}`
const goodFunctionJSON = `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"function","route":"{*route}"},{"type":"http","direction":"out","name":"res"}]}`

// elfHeader returns a minimal 64-bit little-endian ELF executable header for machine.
func elfHeader(t *testing.T, machine elf.Machine) []byte {
	t.Helper()
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(machine), Version: 1, Ehsize: 64}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCheckPackage(t *testing.T) {
	amd64 := string(elfHeader(t, elf.EM_X86_64))
	cases := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"good", map[string]string{"handler*": amd64, "host.json": goodHostJSON, "mcp/function.json": goodFunctionJSON}, nil},
		{"no exec bit", map[string]string{"handler": amd64, "host.json": goodHostJSON, "mcp/function.json": goodFunctionJSON},
			[]string{"handler has no exec bit"}},
		{"arm64", map[string]string{"handler*": string(elfHeader(t, elf.EM_AARCH64)), "host.json": goodHostJSON, "mcp/function.json": goodFunctionJSON},
			[]string{"want ELFCLASS64/EM_X86_64"}},
		{"script", map[string]string{"handler*": "#!/bin/sh\n", "host.json": goodHostJSON, "mcp/function.json": goodFunctionJSON},
			[]string{"not an ELF binary"}},
		{"missing files", map[string]string{"handler*": amd64},
			[]string{"host.json:", "mcp/function.json:"}},
		{"wrong host.json", map[string]string{"handler*": amd64, "mcp/function.json": goodFunctionJSON,
			"host.json": `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"app"},"enableForwardingHttpRequest":true}}`},
			[]string{`defaultExecutablePath "app"`, "enableProxyingHttpRequest", "routePrefix"}},
		{"anonymous trigger", map[string]string{"handler*": amd64, "host.json": goodHostJSON,
			"mcp/function.json": strings.Replace(goodFunctionJSON, `"function"`, `"anonymous"`, 1)},
			[]string{"no httpTrigger binding with authLevel function"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, c.files)
			wantErrs(t, CheckPackage(dir), c.want...)
		})
	}
}

func TestCheckDockerfile(t *testing.T) {
	good, err := os.ReadFile("testdata/docker/good.Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	wantErrs(t, CheckDockerfile(string(good)))
	bad, err := os.ReadFile("testdata/docker/bad.Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	wantErrs(t, CheckDockerfile(string(bad)),
		"build stage FROM golang:1.22",
		"does not `go build … ./cmd/mcpgate`",
		"final stage FROM debian:12",
		`final stage runs "RUN apt-get update"`,
		`copies "COPY README.md /README.md" from outside the build stage`,
		"final stage runs as root",
	)
	wantErrs(t, CheckDockerfile("FROM golang:1.26\nRUN go build ./cmd/mcpgate\n"), "want a multi-stage build")
}

func TestReadmeEnvVars(t *testing.T) {
	readme := "| flag | environment variable | default | meaning |\n|---|---|---|---|\n" +
		"| `--public-url` | `MCPGATE_PUBLIC_URL` | `x` | y |\n| `--dev` | `MCPGATE_DEV_LOGIN` | `false` | z |\n| other | `NOT_A_ROW` | | |\n"
	if got := ReadmeEnvVars(readme); !slices.Equal(got, []string{"MCPGATE_PUBLIC_URL", "MCPGATE_DEV_LOGIN"}) {
		t.Errorf("ReadmeEnvVars = %v", got)
	}
}

func TestCLICalls(t *testing.T) {
	src := "retry x \\\n  go run ./gateway/cmd/mcpgate keys rotate \\\n  --app \"$A\" --if-missing\ngo run ./other --x\necho go run ./gateway/cmd/mcpgate secrets generate --secret=s\n"
	got := CLICalls(src, "./gateway/cmd/mcpgate")
	if len(got) != 2 || !slices.Equal(got[0].Subcommands, []string{"keys", "rotate"}) || !slices.Equal(got[0].Flags, []string{"app", "if-missing"}) ||
		!slices.Equal(got[1].Subcommands, []string{"secrets", "generate"}) || !slices.Equal(got[1].Flags, []string{"secret"}) {
		t.Errorf("CLICalls = %+v", got)
	}
}
