package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/e2e/harness"
	"github.com/mcpgate/mcpgate/e2e/infracheck"
)

// The deployment checks below read azure.yaml, infra/ (Bicep), the hooks, gateway/Dockerfile
// and the function app package built by the prepackage hook. Neither azd nor the Bicep
// compiler can run here, so they use e2e/infracheck's line-based scanner: they catch renamed
// variables, missing outputs, dangling symbols and broken packages, not every Bicep error.

// gatewayAzureEnv lists what `mcpgate serve` needs in Azure, set by infra/modules/gateway.bicep.
// Every MCPGATE_ name must also be a row of README.md's configuration table (which the config
// package's tests keep in step with the code), so renaming a variable fails this test.
var gatewayAzureEnv = []string{
	"MCPGATE_PUBLIC_URL",
	"MCPGATE_LISTEN",
	"MCPGATE_METRICS_LISTEN",
	"MCPGATE_BACKEND_URL",
	"MCPGATE_REDIS_URL",
	"MCPGATE_REDIS_ENTRA",
	"MCPGATE_KEYVAULT_URL",
	"MCPGATE_FUNCTION_KEY_SECRET",
	"MCPGATE_SESSION_KEYS_SECRET",
	"MCPGATE_CLIENTS_STORE",
	"MCPGATE_ENTRA_TENANT_ID",
	"MCPGATE_UPSTREAM_CLIENT_ID",
	"MCPGATE_UPSTREAM_FIC_CLIENT_ID",
	"MCPGATE_UPSTREAM_SCOPES",
	"MCPGATE_TRUSTED_PROXIES",
	"AZURE_CLIENT_ID",
}

// functionAzureEnv lists what the function app reads in Azure (identity-based host storage,
// also used for the snippets); each name must appear in functionapp's Go sources.
var functionAzureEnv = []string{
	"AzureWebJobsStorage__blobServiceUri",
	"AzureWebJobsStorage__clientId",
	"AzureWebJobsStorage__credential",
}

// flexForbiddenEnv must not be app settings on Flex Consumption (azure.md §1.5), and
// AzureWebJobsStorage as a connection string cannot work with shared keys off.
var flexForbiddenEnv = []string{
	"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
	"WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE", "AzureWebJobsStorage",
}

// azdProvided are variables azd itself puts in the hooks' environment (not Bicep outputs).
var azdProvided = []string{"AZURE_ENV_NAME", "AZURE_SUBSCRIPTION_ID", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID", "AZURE_PRINCIPAL_TYPE"}

var reAzdServiceVar = regexp.MustCompile(`^SERVICE_[A-Z0-9_]+_(RESOURCE_EXISTS|IMAGE_NAME)$`)

func infraFiles(t *testing.T) (root string, main *infracheck.BicepFile, all []*infracheck.BicepFile) {
	t.Helper()
	root = harness.RepoRoot(t)
	all, err := infracheck.ParseBicepDir(filepath.Join(root, "infra"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		if filepath.Base(f.Path) == "main.bicep" && filepath.Base(filepath.Dir(f.Path)) == "infra" {
			main = f
		}
	}
	if main == nil {
		t.Fatal("infra/main.bicep is missing")
	}
	return root, main, all
}

func bicepFile(t *testing.T, all []*infracheck.BicepFile, rel string) *infracheck.BicepFile {
	t.Helper()
	for _, f := range all {
		if strings.HasSuffix(filepath.ToSlash(f.Path), "/infra/"+rel) {
			return f
		}
	}
	t.Fatalf("infra/%s is missing", rel)
	return nil
}

func reportAll(t *testing.T, errs []error) {
	t.Helper()
	for _, e := range errs {
		t.Error(e)
	}
}

func loadProject(t *testing.T, root string) *infracheck.Project {
	t.Helper()
	p, err := infracheck.LoadProject(root)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInfraProject checks azure.yaml: both services, their project folders, Dockerfile and
// build context, hook scripts, and that each service has a resource tagged azd-service-name.
func TestInfraProject(t *testing.T) {
	root, main, all := infraFiles(t)
	p := loadProject(t, root)
	if got := p.Services(); !slices.Equal(got, []string{"functionapp", "gateway"}) {
		t.Errorf("azure.yaml services = %v, want functionapp and gateway", got)
	}
	reportAll(t, p.CheckPaths())
	tags := infracheck.ServiceTags(all)
	for _, s := range p.Services() {
		if !slices.Contains(tags, s) {
			t.Errorf("no Bicep resource is tagged 'azd-service-name': '%s' (azd finds the deploy target by that tag)", s)
		}
	}
	if p.Doc.Str("services", "gateway", "host") != "containerapp" || p.Doc.Str("services", "gateway", "docker", "remoteBuild") != "true" {
		t.Error("azure.yaml: gateway must be host containerapp with docker.remoteBuild true")
	}
	if p.Doc.Str("services", "functionapp", "host") != "function" || p.Doc.Str("services", "functionapp", "language") != "custom" {
		t.Error("azure.yaml: functionapp must be host function, language custom")
	}
	// A Container Apps service without docker.registry needs the registry endpoint output.
	reportAll(t, infracheck.CheckOutputs(main, []string{"AZURE_CONTAINER_REGISTRY_ENDPOINT"}))
}

// TestInfraBicep checks every Bicep file: module calls (files, params, outputs), role
// assignments (declared identities, reviewed roles), the Graph extension, and that no output
// carries a key.
func TestInfraBicep(t *testing.T) {
	root, _, all := infraFiles(t)
	for _, f := range all {
		reportAll(t, infracheck.CheckModules(f))
		reportAll(t, infracheck.CheckRoleAssignments(f))
		for _, o := range f.Outputs {
			line := strings.Split(f.Text, "\n")[o.Line-1]
			if strings.Contains(strings.ToLower(line), "listkeys") || strings.Contains(line, "secret") {
				t.Errorf("%s:%d: output %s must not carry a key or secret", f.Path, o.Line, o.Name)
			}
		}
	}
	cfg, err := os.ReadFile(filepath.Join(root, "infra", "bicepconfig.json"))
	if err != nil {
		t.Fatal(err)
	}
	reportAll(t, infracheck.CheckGraphExtension(all, string(cfg)))
	var roles int
	for _, f := range all {
		roles += len(f.Roles)
	}
	if roles < 6 {
		t.Errorf("found %d role assignments; the scanner is probably not seeing them", roles)
	}
}

// TestInfraWiring checks the few cross-module facts the scanner can read as text: the gateway
// URL that becomes the redirect URI is the one the gateway serves as its public URL, the
// federated credential trusts the gateway's identity (not the function app's), and the
// function key is never created in Bicep.
func TestInfraWiring(t *testing.T) {
	_, main, all := infraFiles(t)
	for _, want := range []string{
		"redirectUri: '${gatewayUrl}/oauth-callback'",
		"publicUrl: gatewayUrl",
		"output GATEWAY_URL string = gatewayUrl",
		"gatewayIdentityPrincipalId: identities.outputs.gatewayIdentityPrincipalId",
		"backendUrl: 'https://${functionAppName}.azurewebsites.net'",
		"output MCP_ENDPOINT string = '${gatewayUrl}/mcp'",
		"output MCP_SSE_ENDPOINT string = '${gatewayUrl}/mcp/sse'",
	} {
		if !strings.Contains(main.Text, want) {
			t.Errorf("%s: missing %q", main.Path, want)
		}
	}
	app := bicepFile(t, all, "modules/entra-app.bicep")
	for _, want := range []string{"audiences: ['api://AzureADTokenExchange']", "subject: gatewayIdentityPrincipalId",
		"/v2.0'", "redirectUris: [redirectUri]", "appRoleAssignmentRequired: appRoleAssignmentRequired"} {
		if !strings.Contains(app.Text, want) {
			t.Errorf("%s: missing %q", app.Path, want)
		}
	}
	if !strings.Contains(main.Text, "identifierUri: 'api://${subscription().tenantId}/") {
		t.Errorf("%s: the identifier URI must have the api://{tenantId}/… form", main.Path)
	}
	gw := bicepFile(t, all, "modules/gateway.bicep")
	if err := infracheck.CheckEnvValue(gw, "MCPGATE_UPSTREAM_FIC_CLIENT_ID", "gatewayIdentity.properties.clientId"); err != nil {
		t.Error(err)
	}
	if err := infracheck.CheckEnvValue(gw, "AZURE_CLIENT_ID", "gatewayIdentity.properties.clientId"); err != nil {
		t.Error(err)
	}
	for _, f := range all {
		for _, r := range f.Resources {
			if strings.Contains(r.Type, "/host/") || strings.HasSuffix(strings.Split(r.Type, "@")[0], "/functionKeys") {
				t.Errorf("%s:%d: %s: function keys are created by the postdeploy hook, not in Bicep (Flex)", f.Path, r.Line, r.Type)
			}
		}
	}
}

// TestInfraEnvironment checks that the Bicep sets every variable the gateway and the function
// app read in Azure, under the names the code uses.
func TestInfraEnvironment(t *testing.T) {
	root, _, all := infraFiles(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := infracheck.ReadmeEnvVars(string(readme))
	if len(documented) < 10 {
		t.Fatalf("README.md configuration table not found (read %d rows)", len(documented))
	}
	gw := bicepFile(t, all, "modules/gateway.bicep")
	for _, name := range gatewayAzureEnv {
		if strings.HasPrefix(name, "MCPGATE_") && !slices.Contains(documented, name) {
			t.Errorf("%s is not in README.md's configuration table: renamed? update gatewayAzureEnv and gateway.bicep", name)
		}
	}
	for _, p := range gw.Pairs {
		if strings.HasPrefix(p.Name, "MCPGATE_") && !slices.Contains(documented, p.Name) {
			t.Errorf("%s:%d: sets %s, which the gateway does not read (not in README.md's table)", gw.Path, p.Line, p.Name)
		}
	}
	reportAll(t, infracheck.CheckEnvSet(gw, gatewayAzureEnv))
	if err := infracheck.CheckEnvValue(gw, "MCPGATE_REDIS_ENTRA", "'true'"); err != nil {
		t.Error(err)
	}
	// OTEL_EXPORTER_OTLP_ENDPOINT is injected by the environment's managed OpenTelemetry agent.
	env := bicepFile(t, all, "modules/containerapps-env.bicep")
	for _, want := range []string{"openTelemetryConfiguration", "appInsightsConfiguration", "tracesConfiguration"} {
		if !strings.Contains(env.Text, want) {
			t.Errorf("%s: no %s: OTEL_EXPORTER_OTLP_ENDPOINT would not be injected into the gateway", env.Path, want)
		}
	}

	fn := bicepFile(t, all, "modules/functionapp.bicep")
	reportAll(t, infracheck.CheckEnvSet(fn, functionAzureEnv))
	reportAll(t, infracheck.CheckEnvAbsent(fn, flexForbiddenEnv))
	if err := infracheck.CheckEnvValue(fn, "AzureWebJobsStorage__credential", "'managedidentity'"); err != nil {
		t.Error(err)
	}
	src := goSources(t, filepath.Join(root, "functionapp"))
	for _, name := range functionAzureEnv {
		if !strings.Contains(src, `"`+name+`"`) {
			t.Errorf("functionapp's Go code never reads %q: renamed? update functionAzureEnv and functionapp.bicep", name)
		}
	}
	for _, want := range []string{"name: 'custom'", "'FlexConsumption'", "ipSecurityRestrictionsDefaultAction: 'Deny'"} {
		if !strings.Contains(fn.Text, want) {
			t.Errorf("%s: missing %s", fn.Path, want)
		}
	}
}

// goSources concatenates the non-test Go files under dir.
func goSources(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		src, err := os.ReadFile(p)
		b.Write(src)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestInfraHookOutputs checks that every variable the hooks and azure.yaml read is a Bicep
// output of infra/main.bicep (azd passes outputs to hooks as environment variables) or one
// azd sets itself.
func TestInfraHookOutputs(t *testing.T) {
	root, main, _ := infraFiles(t)
	p := loadProject(t, root)
	scripts := p.HookScripts()
	if len(scripts) < 4 {
		t.Errorf("azure.yaml runs %d hook scripts, want preprovision, postprovision, postdeploy and prepackage", len(scripts))
	}
	used := p.EnvRefs()
	for _, s := range scripts {
		src, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		used = append(used, infracheck.ShellEnvRefs(string(src))...)
	}
	var outputs []string
	for _, v := range used {
		if !slices.Contains(azdProvided, v) && !reAzdServiceVar.MatchString(v) {
			outputs = append(outputs, v)
		}
	}
	slices.Sort(outputs)
	outputs = slices.Compact(outputs)
	t.Logf("outputs used by hooks and azure.yaml: %v", outputs)
	for _, must := range []string{"KEYVAULT_URL", "FUNCTION_APP_NAME", "GATEWAY_URL", "AZURE_RESOURCE_GROUP"} {
		if !slices.Contains(outputs, must) {
			t.Errorf("no hook reads %s: the hooks changed; review this test", must)
		}
	}
	reportAll(t, infracheck.CheckOutputs(main, outputs))
}

// TestInfraHookCommands checks the mcpgate commands the hooks run (see checkCLICalls).
func TestInfraHookCommands(t *testing.T) {
	root := harness.RepoRoot(t)
	p := loadProject(t, root)
	n := 0
	for _, s := range p.HookScripts() {
		src, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		n += checkCLICalls(t, root, s, string(src))
	}
	if n < 2 {
		t.Errorf("found %d mcpgate calls in the hooks, want secrets generate (postprovision) and keys rotate (postdeploy)", n)
	}
}

// checkCLICalls fails when a hook calls `go run ./gateway/cmd/mcpgate` with a subcommand or
// flag name that the command's sources never mention as a string literal (a text check: the
// command may not build while it is being written, and a renamed flag must still fail).
func checkCLICalls(t *testing.T, root, script, src string) int {
	t.Helper()
	calls := infracheck.CLICalls(src, "./gateway/cmd/mcpgate")
	if len(calls) == 0 {
		return 0
	}
	cli := goSources(t, filepath.Join(root, "gateway", "cmd", "mcpgate"))
	for _, c := range calls {
		for _, w := range append(slices.Clone(c.Subcommands), c.Flags...) {
			if !strings.Contains(cli, `"`+w+`"`) {
				t.Errorf("%s: `mcpgate %s` uses %q, which gateway/cmd/mcpgate never defines", filepath.Base(script), strings.Join(c.Subcommands, " "), w)
			}
		}
	}
	return len(calls)
}

// TestInfraDockerfile checks gateway/Dockerfile's shape and that the gateway module resolves
// on its own (the image builds with GOWORK=off from gateway/go.mod and go.sum).
func TestInfraDockerfile(t *testing.T) {
	root := harness.RepoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "gateway", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	reportAll(t, infracheck.CheckDockerfile(string(src)))
	if !strings.Contains(string(src), "GOWORK=off") {
		t.Error("gateway/Dockerfile must build with GOWORK=off (the image holds only the gateway module)")
	}
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatalf(".dockerignore: %v (the build context is the repository root: keep node_modules out of it)", err)
	}
	if !strings.Contains(string(ignore), "!gateway/") {
		t.Error(".dockerignore must let gateway/ into the build context")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "./cmd/mcpgate")
	cmd.Dir = filepath.Join(root, "gateway")
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("GOWORK=off go list -deps ./cmd/mcpgate (what the Docker build needs): %v\n%s", err, tailLines(string(out), 20))
	}
}

// TestInfraFunctionPackage runs the functionapp prepackage hook exactly as azure.yaml declares
// it, into a temporary dist, and checks the package azd would zip.
func TestInfraFunctionPackage(t *testing.T) {
	root := harness.RepoRoot(t)
	p := loadProject(t, root)
	script, dist, err := p.DistHook("functionapp")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.IsAbs(dist) || strings.HasPrefix(filepath.Clean(dist), "..") {
		t.Errorf("azure.yaml: dist %q must be inside the repository", dist)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "package-functionapp.sh")); err != nil {
		t.Fatalf("scripts/package-functionapp.sh (called by %s): %v", script, err)
	}
	out := filepath.Join(t.TempDir(), "dist")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, out)
	cmd.Dir = filepath.Join(root, p.Doc.Str("services", "functionapp", "project")) // azd runs service hooks there
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", script, out, err, tailLines(string(b), 30))
	}
	reportAll(t, infracheck.CheckPackage(out))
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
